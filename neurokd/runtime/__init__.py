"""The process a command runs in: ``threads`` (how many torch threads), ``signals`` (Ctrl-C and
SIGTERM as one stop flag), ``progress`` (bars and lines) and ``device`` (CPU or CUDA). Nothing
here imports above ``neurokd.errors``."""
