"""Inference for the Space's two tasks, with no web framework. One entry point:

    from inference import analyze

    answer = analyze("car", "car.jpg", explain=True)   # decode once -> quality -> model -> heat maps -> Answer
    answer.status                                      # judged, not_judged, retake or unreadable
    answer.prediction.heads["damage"].label            # 'intact'
    inference.render.RENDERERS["rest"](answer)         # the JSON of a format

`load_model(task)` gives the served predictor (Hub, HF cache or the bundled checkpoint), `predict` and
`predict_batch` the bare labels, `explain` one heat map.
"""
from inference.answer import Answer, analyze, analyze_photos
from inference.explain import explain
from inference.predictor import Prediction, Predictor, load_model, predict, predict_batch

__all__ = ["Answer", "Prediction", "Predictor", "analyze", "analyze_photos", "explain", "load_model", "predict",
           "predict_batch"]
