//! camrelay
