"""Image operations around the model: the one resize, box/guided filters, the weight-free refiner, compositing."""
