# A scripted targetcli session: every backstore kind, an iSCSI target with LUNs, an ACL with
# auth, a loopback target; then saveconfig -> clearconfig -> restoreconfig -> saveconfig.
# Usage: targetcli-session.sh OUTDIR BLOCKDEV FILEIO_IMAGE
set -e
O=$1; L=$2; F=$3
targetcli /backstores/ramdisk create r0 16M >/dev/null
targetcli /backstores/fileio create f0 $F 32M >/dev/null
targetcli /backstores/block create b0 $L >/dev/null
targetcli /iscsi create iqn.2026-12.org.simfs:tc >/dev/null
targetcli /iscsi/iqn.2026-12.org.simfs:tc/tpg1/luns create /backstores/ramdisk/r0 >/dev/null
targetcli /iscsi/iqn.2026-12.org.simfs:tc/tpg1/luns create /backstores/block/b0 >/dev/null
targetcli /iscsi/iqn.2026-12.org.simfs:tc/tpg1/acls create iqn.2026-12.org.example:a >/dev/null
targetcli /iscsi/iqn.2026-12.org.simfs:tc/tpg1/acls/iqn.2026-12.org.example:a set auth userid=u password=p >/dev/null
targetcli /loopback create naa.5001405aaaaaaaa1 >/dev/null
targetcli /loopback/naa.5001405aaaaaaaa1/luns create /backstores/fileio/f0 >/dev/null
targetcli ls > $O/tc_ls1.txt
targetcli saveconfig $O/tc_save1.json >/dev/null
targetcli clearconfig confirm=True
targetcli ls > $O/tc_ls_empty.txt
targetcli restoreconfig $O/tc_save1.json
targetcli ls > $O/tc_ls2.txt
targetcli saveconfig $O/tc_save2.json >/dev/null
targetcli clearconfig confirm=True >/dev/null
targetcli ls > $O/tc_ls_cleared.txt
