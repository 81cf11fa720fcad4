"""Recipe-side utilities (Kaldi data dirs, audio formatting, speed perturbation, job backends,
``ssl.sh`` option parsing, FSDD preparation). Each ``espnet2.bin`` recipe CLI is a thin wrapper."""
