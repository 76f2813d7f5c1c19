"""verilabel inside other tools: Label Studio's ML backend (``label_studio_backend``)."""
