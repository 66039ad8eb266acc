"""predict_scores computes an IsolationForest's scores without scikit-learn's per-tree joblib
call; they must be exactly scikit-learn's, for the cold-start model and the novelty detector, on
real rows and on rows with unseen categories and missing attributes."""

import numpy as np
import pandas as pd
import pytest

from models_registry import ml
from reviews.csv_import import infer_schema

DATA = "data/nsl-kdd/"


@pytest.fixture(scope="module")
def nsl():
    schema = infer_schema(DATA + "KDDTrain+_20Percent.csv.gz", {"label", "difficulty"})
    spec = ml.FeatureSpec.from_schema(schema)
    train = pd.read_csv(DATA + "KDDTrain+_20Percent.csv.gz").iloc[:4000]
    test = pd.read_csv(DATA + "KDDTest+.csv.gz").iloc[:1500]

    def frame(df):
        return ml.frame_from_rows(df.drop(columns=["label", "difficulty"]).to_dict("records"), spec)

    odd = ml.frame_from_rows([{"protocol_type": "sctp", "service": "gopher-over-quic"}, {}, {"src_bytes": 1e18}], spec)
    return spec, frame(train), (train["label"] != "normal").to_numpy(), pd.concat([frame(test), odd], ignore_index=True)


def test_cold_start_forest_scores_are_scikit_learns(nsl):
    spec, X, _, live = nsl
    bundle = ml.fit(spec, ml.ISOLATION_FOREST, X)
    forest = bundle["pipeline"]
    assert np.array_equal(ml._forest_score_samples(forest, live), forest.score_samples(live))
    assert np.array_equal(ml.predict_scores(bundle, live), np.clip(-forest.score_samples(live), 0.0, 1.0))


def test_novelty_detector_scores_are_scikit_learns(nsl):
    spec, X, y, live = nsl
    bundle = ml.fit(spec, ml.HIST_GRADIENT_BOOSTING, X, y)
    detector = bundle["novelty"]
    assert detector is not None
    assert np.array_equal(ml._forest_score_samples(detector, live), detector.score_samples(live))
    for n in (1, 7):  # one event, a few: the sizes where the per-tree call cost the most
        assert np.array_equal(ml._forest_score_samples(detector, live.iloc[:n]), detector.score_samples(live.iloc[:n]))


def test_a_forest_fitted_on_a_feature_subset_is_scored_like_scikit_learn(nsl):
    spec, X, _, live = nsl
    pipeline = ml.build_pipeline(spec, ml.ISOLATION_FOREST)
    pipeline.set_params(model__max_features=0.5)
    pipeline.fit(X)
    assert np.array_equal(ml._forest_score_samples(pipeline, live), pipeline.score_samples(live))
