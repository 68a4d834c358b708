"""Pure, batched densities and divergences (no Flax, no config).

Every function is jit/vmap/grad-safe; shapes and static hyperparameters are
validated at trace time. Docstrings name the VJE paper equation or the
``gje-formulation.md`` section they implement.
"""

from gjax.math._numerics import EPS, normalize, safe_norm, softplus_variance
from gjax.math.contrastive import gmje_degenerate_info_nce, info_nce, nt_xent
from gjax.math.gaussian import (
  EmpiricalGaussianNLL,
  GaussianConditional,
  diag_gaussian_log_prob,
  diag_gaussian_sample,
  empirical_gaussian_nll,
  empirical_half_log_det,
  gaussian_conditional,
  gaussian_conditional_from_tril,
  gaussian_log_prob,
  gaussian_log_prob_from_cov,
  gaussian_marginal,
  gaussian_sample,
  half_log_det_from_tril,
  isotropic_gaussian_log_prob,
  mahalanobis_sq,
  reparameterize_diag,
  scale_tril_from_params,
  tri_solve,
)
from gjax.math.gng import GNGParams, GNGState, gng_init, gng_mixture, gng_quantization_error, gng_step, gng_update
from gjax.math.kl import (
  free_bits_kl,
  kl_diag_gaussian_standard_normal,
  kl_diag_gaussian_standard_normal_per_dim,
  kl_diag_gaussians,
)
from gjax.math.memory_bank import (
  FIFO_QUEUE,
  ParticleBank,
  SMCParams,
  bank_info_nce,
  bank_init,
  bank_insert,
  bank_move,
  bank_reweight,
  effective_sample_size,
  kernel_log_likelihood,
  smc_bank_step,
  systematic_resample,
)
from gjax.math.mixture import (
  MIXTURE_FITS,
  ConditionalMixture,
  MixtureParams,
  MixtureStatistics,
  em_step,
  joint_embeddings,
  mixture_component_log_probs,
  mixture_conditional,
  mixture_conditional_log_prob,
  mixture_log_prob,
  mixture_m_step,
  mixture_responsibilities,
  mixture_sample,
  mixture_statistics,
  online_em_step,
)
from gjax.math.posterior import (
  ACTIVE_UNIT_THRESHOLD,
  DEAD_CHANNEL_RATIO,
  active_units,
  dead_channels,
  mean_pairwise_cosine,
  mu_spread_to_posterior_std,
  posterior_diagnostics,
  posterior_statistics,
)
from gjax.math.sliced import effective_rank, epps_pulley, random_unit_directions, sliced_epps_pulley
from gjax.math.student_t import (
  multivariate_student_t_log_prob,
  multivariate_student_t_nll,
  student_t_directional_nll,
  student_t_directional_parts,
  student_t_kernel,
  student_t_log_normalizer,
  student_t_nll_parts,
  student_t_radial_log_normalizer,
  student_t_radial_nll,
)
from gjax.math.vje import KL_CONVENTIONS, vje_symmetric_loss
