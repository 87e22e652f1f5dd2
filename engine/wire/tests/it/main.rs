mod docs;
mod examples;
mod props;
mod receipt;
