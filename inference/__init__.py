"""Inference for the Space's two tasks, with no web framework: load a checkpoint (Hub, HF cache or the
bundled copy), predict one photo or many, and explain a prediction with Grad-CAM.

    from inference import load_model, predict, predict_batch, explain

    predict("car", "car.jpg").heads["damage"].label          # 'intact'
    load_model("collectibles").predict_batch(["a.jpg", "b.jpg"])
    explain("car", "car.jpg", head="damage")                 # PIL image: the heat map over the photo
"""
from inference.explain import explain
from inference.predictor import Prediction, Predictor, load_model, predict, predict_batch

__all__ = ["Prediction", "Predictor", "explain", "load_model", "predict", "predict_batch"]
