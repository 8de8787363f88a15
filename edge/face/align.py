"""Face alignment: the five detected landmarks onto the ArcFace 112x112 template by a similarity transform.

Why our own: the similarity transform is a few lines of linear algebra, while the library version pulls
scipy and scikit-image into the face worker (~38 MB of its memory) for this one step.

The transform (rotation + uniform scale + translation) that maps the landmarks `src` onto the template `dst`
with the least squared error is the closed form of Umeyama (1991), "Least-squares estimation of
transformation parameters between two point patterns": centre both point sets, take the SVD of their
cross-covariance, the rotation is U·S·Vᵀ (S flips the last axis when needed so it is a rotation, not a
reflection), the scale is trace(D·S) over the variance of `src`, and the translation moves the centroid of
`src` onto the centroid of `dst`. The crop is then `cv2.warpAffine` with bilinear interpolation and a black
constant border.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

ALIGNED_SIZE = 112

# Where the eyes, nose tip and mouth corners (image-left first) sit in the 112x112 crop ArcFace and SFace
# were trained on (the ArcFace paper's alignment template).
TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def similarity_transform(src: npt.ArrayLike, dst: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The 2x3 matrix of the similarity transform that maps the points `src` (Nx2) onto `dst` (Nx2) with the
    least squared error. A degenerate `src` (all points equal) gives ValueError."""
    p = np.asarray(src, dtype=np.float64)
    q = np.asarray(dst, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape != q.shape or p.shape[0] < 2:
        raise ValueError(f"need two matching Nx2 point sets (N >= 2), got {p.shape} and {q.shape}")
    p_mean, q_mean = p.mean(axis=0), q.mean(axis=0)
    pc, qc = p - p_mean, q - q_mean
    var_p = float((pc**2).sum()) / p.shape[0]
    if not np.isfinite(var_p) or var_p <= 1e-12:
        raise ValueError("the source points are all in one place")
    cov = qc.T @ pc / p.shape[0]  # cross-covariance of dst and src (2x2)
    u, d, vt = np.linalg.svd(cov)
    s = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # the best orthogonal map would be a reflection
        s[-1] = -1.0
    rotation = u @ np.diag(s) @ vt
    scale = float((d * s).sum()) / var_p
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = q_mean - scale * rotation @ p_mean
    return matrix


def align_matrix(landmarks: npt.ArrayLike, size: int = ALIGNED_SIZE) -> npt.NDArray[np.float64]:
    """The 2x3 matrix that maps five image landmarks onto the template scaled to a `size` x `size` crop."""
    if size % ALIGNED_SIZE:
        raise ValueError(f"crop size must be a multiple of {ALIGNED_SIZE}, got {size}")
    return similarity_transform(landmarks, TEMPLATE * (size / ALIGNED_SIZE))


def align_face(
    image: npt.NDArray[Any], landmarks: npt.ArrayLike, size: int = ALIGNED_SIZE
) -> npt.NDArray[Any]:
    """The `size` x `size` crop of a face whose five landmarks (5x2: eyes, nose, mouth corners, image-left
    first) are given in `image`'s pixels."""
    import cv2

    matrix = align_matrix(landmarks, size)
    return np.asarray(
        cv2.warpAffine(
            image,
            matrix,
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
    )
