//! Integration tests of the builders and the packer against a brute-force reference.

mod alloc_count;
mod builders;
mod economics;
mod reference;
