from slurm_ai.cli import main

main()
