#!/bin/sh
# install_conf.sh CONFDIR NAME... - run by `meson install` (meson.add_install_script)
# after the files are in place: CONFDIR/NAME.example is always the shipped
# example (installed by install_data), and CONFDIR/NAME is made from it only
# when there is no such file yet, so that an upgrade from source keeps the
# configuration an operator edited. Honours DESTDIR (and meson's dry run).
set -eu

confdir=${1:?CONFDIR}
shift
dest=${DESTDIR:-}$confdir

for name in "$@"; do
    target=$dest/$name
    if [ -e "$target" ] || [ -L "$target" ]; then
        echo "Keeping $target (the shipped example is $target.example)"
        continue
    fi
    echo "Installing $target (from $name.example)"
    if [ -n "${MESON_INSTALL_DRY_RUN:-}" ]; then
        continue
    fi
    cp "$dest/$name.example" "$target.tmp.$$"
    chmod 644 "$target.tmp.$$"
    mv "$target.tmp.$$" "$target"
done
