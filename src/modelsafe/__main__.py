"""``python -m modelsafe``: the command line, also under ``torchrun --nproc_per_node N -m modelsafe train ...``."""

from modelsafe.cli import main

if __name__ == "__main__":
    main()
