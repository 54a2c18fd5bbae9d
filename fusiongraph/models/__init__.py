"""Models: the roster (the models.yaml spec), the model kinds, the local llama.cpp runtime, GGUF parts and discovery."""
