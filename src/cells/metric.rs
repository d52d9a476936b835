//! The names of the metrics that cell evaluators report, in one place: the benchmark table's
//! columns and what short training measures.

use std::collections::BTreeMap;

/// The table's search signal: validation accuracy (%) after 12 epochs.
pub const TABLE_FITNESS: &str = "valid_acc_12";
/// The table's reported number: test accuracy (%) after 200 epochs.
pub const TABLE_TEST: &str = "test_acc_200";
/// The table's validation accuracy (%) after 200 epochs.
pub const TABLE_VALID: &str = "valid_acc_200";
/// The table's simulated seconds of 200 epochs of training.
pub const TABLE_TRAIN_TIME: &str = "train_time_s_200";
/// Short training: accuracy (%) on the held-out part of the training split (the fitness).
pub const TRAINED_VALID: &str = "valid_acc";
/// Short training: accuracy (%) on the dataset's test split.
pub const TRAINED_TEST: &str = "test_acc";

/// The prefix of a verified-accuracy objective on the command line (`verified:0.01`).
pub const VERIFIED_OBJECTIVE: &str = "verified:";

/// Verified accuracy (%) on the held-out points at radius `eps` (as written): `verified_0.01`.
pub fn verified(eps: &str) -> String {
    format!("verified_{eps}")
}

/// Held-out points left unknown at radius `eps` (as written).
pub fn verify_unknown(eps: &str) -> String {
    format!("verify_unknown_{eps}")
}

/// Held-out points with a confirmed counterexample at radius `eps` (as written).
pub fn verify_falsified(eps: &str) -> String {
    format!("verify_falsified_{eps}")
}

/// Seconds of every verification query of a candidate.
pub const VERIFY_SECONDS: &str = "verify_seconds";

/// The test accuracy an evaluator reports: the table's, or that of short training.
pub fn test_accuracy(metrics: &BTreeMap<String, f64>) -> Option<f64> {
    metrics
        .get(TABLE_TEST)
        .or(metrics.get(TRAINED_TEST))
        .copied()
}

/// The validation accuracy an evaluator reports: the table's after 200 epochs, or that of
/// short training.
pub fn valid_accuracy(metrics: &BTreeMap<String, f64>) -> Option<f64> {
    metrics
        .get(TABLE_VALID)
        .or(metrics.get(TRAINED_VALID))
        .copied()
}
