"""Evaluation: DeepFashion2 consumer-to-shop retrieval accuracy (Acc@k).

:func:`evaluate_retrieval` scores a submission exactly by the official rules (stated in
:mod:`clothes_retrieval.evaluation.retrieval`, with the deviations from the official
script); :func:`evaluate_category_retrieval` scores the category protocol for data without
instance pairs (:mod:`clothes_retrieval.evaluation.category`, with the box-matching rule);
:mod:`clothes_retrieval.evaluation.submission` builds submissions from rankings
(detected or ground-truth boxes) and writes / reads the official JSON;
:mod:`clothes_retrieval.evaluation.test_split` reads the unannotated test split and writes
its submission with the published bundle.
"""

from clothes_retrieval.evaluation.category import (
    category_accuracy,
    category_queries,
    evaluate_category_retrieval,
    match_detections,
)
from clothes_retrieval.evaluation.retrieval import (
    DEFAULT_KS,
    GT_COLUMNS,
    HIT_IOU,
    SUBMISSION_COLUMNS,
    GroundTruthError,
    RetrievalScores,
    SubmissionError,
    box_iou,
    evaluate_retrieval,
)
from clothes_retrieval.evaluation.submission import (
    N_GALLERY_ENTRIES,
    evaluate_submission_json,
    ground_truth_gallery,
    ground_truth_queries,
    gt_box_submission,
    ranking_to_submission,
    read_submission_json,
    records_to_submission,
    submission_to_records,
    write_submission_json,
)
from clothes_retrieval.evaluation.test_split import (
    SplitInfoError,
    read_test_split,
    submit_test_split,
)

__all__ = [
    "DEFAULT_KS",
    "GT_COLUMNS",
    "HIT_IOU",
    "N_GALLERY_ENTRIES",
    "SUBMISSION_COLUMNS",
    "GroundTruthError",
    "RetrievalScores",
    "SplitInfoError",
    "SubmissionError",
    "box_iou",
    "category_accuracy",
    "category_queries",
    "evaluate_category_retrieval",
    "evaluate_retrieval",
    "evaluate_submission_json",
    "ground_truth_gallery",
    "ground_truth_queries",
    "gt_box_submission",
    "match_detections",
    "ranking_to_submission",
    "read_submission_json",
    "read_test_split",
    "records_to_submission",
    "submission_to_records",
    "submit_test_split",
    "write_submission_json",
]
