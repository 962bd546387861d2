//! Whole-file tests of `parse_str`: the example, defaults, and each
//! class of error with its exact place.
