{
  "targets": [
    {
      "target_name": "tulle_native",
      "sources": ["native/tulle_native.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "tulle-cni-shim",
      "type": "executable",
      "sources": ["native/tulle_cni_shim.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["TULLE_CNI_FALLBACK=\"<(module_root_dir)/bin/tulle-cni\""]
    }
  ]
}
