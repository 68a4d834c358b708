"""The shared trainer: ``train_and_evaluate(config, workdir)``."""

from gjax.train.config import base_config, learning_rate, validate_config
from gjax.train.trainer import TrainState, create_train_state, make_optimizer, make_train_step, train_and_evaluate
