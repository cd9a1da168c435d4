"""Training, one module per stage: vae (VAE and decoder), encode (latents and captions), unet, export
(model folders); common holds what they share (processes, checkpoints, logs, run-folder paths)."""
