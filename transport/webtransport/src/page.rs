//! The browser side, as strings a server can serve: the dependency-free ES module of `fpn/1`
//! over WebTransport (`js/fpn.js`) and the demo page (`js/demo.html`), which loads the module
//! from `./fpn.js` and its connection details (`EndpointInfo::json` plus an API key) from
//! `./config.json`.

/// `js/fpn.js`: wire v1 codec, hello/welcome, `connect(url, {hashes, apiKey})`.
pub const FPN_JS: &str = include_str!("../js/fpn.js");
/// `js/demo.html`: connects, submits intents, shows receipts and the blocks that hold them.
pub const DEMO_HTML: &str = include_str!("../js/demo.html");
