"""Training: optimizer, schedule, sampler (data order), checkpoints, the loop; its params section: params.py."""
