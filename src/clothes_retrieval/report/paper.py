"""The paper's reported figures (Ji et al. 2020), shown beside ours in the report.

Source: ../shared/docs/paper.md (Tables 2, 3, 5, 6, 7). AP values are percentages in the
paper; here fractions, like ours.
"""

TABLE2_DETECTION_AP = {  # DeepFashion2 validation: AP, AP50, AP75, APs, APm, APl
    "atss": (0.728, 0.836, 0.806, 0.527, 0.532, 0.730),
    "cascade_mask_rcnn": (0.727, 0.839, 0.804, 0.426, 0.520, 0.684),
    "centernet": (0.704, 0.814, 0.779, 0.301, 0.443, 0.708),
    "retinanet_r101": (0.674, 0.811, 0.762, 0.327, 0.461, 0.676),
    "retinanet_x101": (0.674, 0.812, 0.761, 0.327, 0.519, 0.676),
}

TABLE5_WBF_AP50 = [0.836, 0.840, 0.849, 0.854, 0.858]  # WBF over the first 1..5 detectors

TABLE3_ACC10_GT = {  # Acc@10 with ground-truth boxes on validation
    "m0": 0.868,
    "m1": 0.873,
    "m2": 0.873,
    "m3": 0.878,
    "m4": 0.879,
    "m5": 0.877,
    "m6": 0.878,
    "m8": 0.871,
    "m9": 0.858,
    "m10": 0.870,
    "m11": 0.870,
    "m12": 0.877,
    "m13": 0.878,
    "m14": 0.881,
    "m15": 0.882,
    "m16": 0.880,
    "m17": 0.870,
}

TABLE6_ENSEMBLE_ACC10 = {  # WBF_5 boxes: (validation, test)
    "m4 alone": (0.8694, 0.8401),
    "m1-16": (0.8883, 0.8542),
}

TABLE7_BOX_COUNTS = {"WBF_5 590k boxes": 590_000, "WBF_5 126k boxes": 126_000}

TABLE7_RERANK = {  # m4 on validation: (Acc@1, Acc@10); "<boxes>, <search>"
    "WBF_5 590k boxes, nearest neighbour": (0.6687, 0.8694),
    "WBF_5 126k boxes, nearest neighbour": (0.6509, 0.8538),
    "WBF_5 126k boxes, k-reciprocal re-ranking": (0.6620, 0.8581),
}

# What the paper found for each post-processing step, keyed by the step that a search
# setting enables (PostprocessConfig.steps(), the names of its labels). The paper tried
# PCA whitening, α-QE, DBA and k-reciprocal re-ranking; learned whitening is ours.
POSTPROCESS_FOUND = {
    "whiten-pca": "did not help",
    "whiten-learned": "not tried (PCA whitening did not help)",
    "dba": "did not help",
    "qe": "did not help",
    "rerank": "helped only on a reduced box set (126k of 590k boxes, Table 7)",
}
