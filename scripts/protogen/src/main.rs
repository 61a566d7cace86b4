fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path().expect("vendored protoc"));
    let mut cfg = prost_build::Config::new();
    cfg.out_dir(&args[2]);
    let proto = std::path::Path::new(&args[1]);
    let include = proto.parent().expect("proto path has a parent");
    cfg.compile_protos(&[proto], &[include]).expect("protoc run");
}
