"""The experiments built on gjax, one folder per study (as big_vision's
``configs/proj/<name>/`` and scenic's ``projects/<name>/``): its runner, its
report and plots, its run script and its README (what it studies, the
commands, which split chose its settings). Their tables and figures, with the
raw rows they are made from, are in ``results/<study>/``.

Run from the repository root as ``python -m studies.<name>.<module> --help``;
every command parses its flags with :mod:`studies.cli`. gjax never imports
this package.
"""
