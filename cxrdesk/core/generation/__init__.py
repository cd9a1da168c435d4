"""Generation: the denoising loop (pipeline), a model folder read onto a device (loading), samplers and
guidance (sampling), cross-attention maps (attention), faster UNet and decoder graphs (engines,
onnx_graphs), the text encoder (text), the model components and latent maths (models), region editing
(editing) and few-step sampling with a distilled student (fast)."""
