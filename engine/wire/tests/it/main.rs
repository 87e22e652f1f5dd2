mod docs;
mod examples;
mod props;
