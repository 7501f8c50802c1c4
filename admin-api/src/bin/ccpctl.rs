//! `ccpctl`: the command line for platform engineers, over the admin REST API.

fn main() {}
