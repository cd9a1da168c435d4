"""Generation: the denoising loop (pipeline), samplers and guidance (sampling), cross-attention maps
(attention), faster UNet and decoder graphs (engines, onnx_graphs), the text encoder (text), the
model components and latent maths (models), and region editing (editing)."""
