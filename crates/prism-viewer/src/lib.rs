//! The web viewer (issue 7): a read-only HTTP server and UI over ViRelAy-compatible projects.
