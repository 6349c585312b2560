"""Where models and data come from: the config file, datasets in one format, the seed architectures and their
training."""
