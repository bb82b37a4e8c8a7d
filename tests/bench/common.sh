# Shared by the install and upgrade benchmarks (sourced, in the work folder): the 1 GiB squashfs
# slot image (random payload, stored uncompressed) and a signing PKI, each made once.
# packaging/image/build.sh sources it too, for bench_pki alone.
bench_image_and_pki() {
  mkdir -p root/boot
  if [ ! -s image.sqfs ]; then
    echo k > root/boot/vmlinuz; echo i > root/boot/initrd.img
    head -c $((1024 * 1024 * 1024 - 8192)) /dev/urandom > root/payload
    mksquashfs root image.sqfs -noI -noD -noF -noX -quiet -noappend -no-progress
    rm -f root/payload
  fi
  bench_pki
}

# A test CA (pki/ca.pem, the keyring) and a code-signing certificate it issued (pki/s.key,
# pki/s.pem), made once in the current folder. BENCH_PKI_CN names them (default "bench").
bench_pki() {
  local cn=${BENCH_PKI_CN:-bench}
  mkdir -p pki
  if [ ! -s pki/ca.pem ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -subj "/CN=$cn-ca" \
      -keyout pki/ca.key -out pki/ca.pem -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$cn" -keyout pki/s.key -out pki/s.csr 2>/dev/null
    printf 'keyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n' > pki/s.ext
    openssl x509 -req -in pki/s.csr -CA pki/ca.pem -CAkey pki/ca.key -CAcreateserial -days 3650 -extfile pki/s.ext -out pki/s.pem 2>/dev/null
    rm -rf bundle bundle-1 bundle-2   # signed by the old key
  fi
}
