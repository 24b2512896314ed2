"""Training side: embed patches with a ResNet50, fit the patch classifier, export one ONNX model.

Needs the `export` extra (torch, torchvision, scikit-learn, onnx). Submodules are imported on use.
"""
