{
  "targets": [
    {
      "target_name": "tulle_native",
      "sources": ["native/tulle_native.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
