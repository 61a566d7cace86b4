//! ViRelAy project files (prism-store `project`): YAML parsing and the checks on the parsed
//! project, then writing it back and re-reading it.
use prism_store::Project;
use std::path::Path;

/// One fuzz input (see the module documentation).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(project) = Project::from_yaml(text, Path::new("fuzz/project.yaml")) else {
        return;
    };
    let _ = project.paths();
    for p in project.paths() {
        let _ = Project::resolve_confined(Path::new("/nonexistent/fuzz"), p);
    }
    // What was accepted must write back as YAML that reads again.
    if let Ok(yaml) = project.to_yaml() {
        if let Err(e) = Project::from_yaml(&yaml, Path::new("fuzz/again.yaml")) {
            panic!("a project read from YAML does not read back after writing: {e}\n{yaml}");
        }
    }
}
