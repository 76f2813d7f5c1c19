"""Adapters from model libraries (torchvision, transformers, ultralytics, OpenCLIP, onnxruntime) to the Model
protocol. Each module imports its library lazily, inside ``load``."""
