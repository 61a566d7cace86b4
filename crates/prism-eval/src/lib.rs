//! Evaluation of attributions (issue 8): region perturbation, randomisation sanity checks, completeness.
