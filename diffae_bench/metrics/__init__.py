"""Scoring cores and what they need: tensors or arrays in, values out (PROTOCOL "Metrics, exactly").

image.py         per-image metrics: SSIM, PSNR, MSE (and LPIPS through lpips_metric.py)
frechet.py       Frechet distances: torch-fidelity's InceptionV3 (FID) and the data set's own CNN (fd_cnn)
stats.py         bootstrap confidence intervals
weights.py       pretrained weights for LPIPS and FID: where they are, whether they are the published files

Each core is tested against an independent reference (scikit-image, scipy, scikit-learn,
torch-fidelity) and on oracle inputs; tasks (tasks/) wrap them with data loading.
"""
