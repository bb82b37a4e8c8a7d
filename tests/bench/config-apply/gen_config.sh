#!/bin/bash
# The benchmark cloud-config, the same as ../shared/anchors/ci_gen_cfg.sh: 20 write_files,
# 3 users with ssh keys, hostname, 5 runcmd; plus cloud-init's test-root settings.
# Usage: gen_config.sh DIR
set -euo pipefail
C=$1
mkdir -p "$C/keys" "$C/seed"
cd "$C"
for u in bench1 bench2 bench3; do
  [ -s keys/$u ] || ssh-keygen -q -t ed25519 -N '' -C "$u@anchor" -f keys/$u
done
{
  echo '#cloud-config'
  echo 'hostname: bench-node'
  echo 'fqdn: bench-node.anchor.test'
  echo 'preserve_hostname: false'
  echo 'users:'
  for u in bench1 bench2 bench3; do
    cat <<EOC
  - name: $u
    gecos: Bench user $u
    shell: /bin/bash
    groups: [adm]
    lock_passwd: true
    ssh_authorized_keys:
      - $(cat keys/$u.pub)
EOC
  done
  echo 'write_files:'
  for i in $(seq -w 1 20); do
    cat <<EOC
  - path: /etc/anchor-bench/file-$i.conf
    permissions: '0644'
    owner: root:root
    content: |
      # anchor benchmark file $i
      key_$i = value_$i
      $(head -c 600 /dev/zero | tr '\0' 'x')
EOC
  done
  echo 'runcmd:'
  echo '  - [sh, -c, "echo runcmd-1 > /var/tmp/anchor-runcmd.log"]'
  echo '  - [sh, -c, "echo runcmd-2 $(hostname) >> /var/tmp/anchor-runcmd.log"]'
  echo '  - "id bench1 >> /var/tmp/anchor-runcmd.log"'
  echo '  - "ls /etc/anchor-bench | wc -l >> /var/tmp/anchor-runcmd.log"'
  echo '  - [touch, /var/tmp/anchor-runcmd.done]'
} > user-data.yaml
printf 'instance-id: iid-anchor-bench\nlocal-hostname: bench-node\n' > seed/meta-data
cp user-data.yaml seed/user-data
# The same work as one yip-style boot step (what `ballast-agent stage boot` alone applies), with
# the issue's sysctl settings added (cloud-init has no sysctl module).
{
  echo '#cloud-config'
  echo 'stages:'
  echo '  boot:'
  echo '    - name: bench users'
  echo '      users:'
  for u in bench1 bench2 bench3; do
    cat <<EOC
        $u:
          gecos: Bench user $u
          shell: /bin/bash
          groups: [adm]
          lock_passwd: true
          ssh_authorized_keys:
            - $(cat keys/$u.pub)
EOC
  done
  echo '    - name: bench'
  echo '      hostname: bench-node'
  echo '      sysctl:'
  echo '        vm.max_map_count: "262144"'
  echo '        net.ipv4.ip_forward: "1"'
  echo '      files:'
  for i in $(seq -w 1 20); do
    cat <<EOC
        - path: /etc/anchor-bench/file-$i.conf
          permissions: 0644
          owner: root
          group: root
          content: |
            # anchor benchmark file $i
            key_$i = value_$i
            $(head -c 600 /dev/zero | tr '\0' 'x')
EOC
  done
  echo '      commands:'
  echo '        - echo runcmd-1 > /var/tmp/anchor-runcmd.log'
  echo '        - echo runcmd-2 $(hostname) >> /var/tmp/anchor-runcmd.log'
  echo '        - id bench1 >> /var/tmp/anchor-runcmd.log'
  echo '        - ls /etc/anchor-bench | wc -l >> /var/tmp/anchor-runcmd.log'
  echo '        - touch /var/tmp/anchor-runcmd.done'
} > user-data-boot.yaml
cat > 99-bench-system.cfg <<'EOC'
datasource_list: [NoCloud, None]
network: {config: disabled}
growpart: {mode: 'off'}
resize_rootfs: false
locale: C.UTF-8
EOC
# cloud-init's fastest honest mode: everything in one `cloud-init init` process.
cat > 97-bench-onestage.cfg <<'EOC'
cloud_init_modules: [write_files, set_hostname, users_groups, runcmd, scripts_user]
cloud_config_modules: []
cloud_final_modules: []
EOC
