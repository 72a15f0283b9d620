//! The console's pages, one file per page family; `layout.rs` holds the frame they share.

pub mod action;
pub mod actions;
pub mod bulk;
pub mod dead_letters;
pub mod layout;
pub mod login;
pub mod overview;
