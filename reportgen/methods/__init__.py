"""The engines behind the sections: feature visualization, attributions, DeepDream, projections, dataset
examples, the class-image judge and the budget. They read a model only through `reportgen.model`."""
