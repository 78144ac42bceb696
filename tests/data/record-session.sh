# The scripted session tests/mount/test_record.py records and replays: backstores, an iSCSI
# target with LUNs, an ACL with a mapped LUN, a portal, ALUA groups, attribute writes, a
# TPG made and removed, and refused writes. Usage: bash record-session.sh MOUNTROOT IMG PORT
set -eu
C=$1/target/core
I=$1/target/iscsi
IQN=iqn.2003-01.org.linux-iscsi.sim:rec
INIT=iqn.1994-05.com.example:client
mkdir -p $C/fileio_0/disk0 $C/rd_mcp_1/rd0
echo "fd_dev_name=$2,fd_dev_size=16777216" > $C/fileio_0/disk0/control
echo 1 > $C/fileio_0/disk0/enable
printf 'rd_pages=1024' > $C/rd_mcp_1/rd0/control
echo 5a5b6c7d-0000-1111-2222-333344445555 > $C/rd_mcp_1/rd0/wwn/vpd_unit_serial
echo 1 > $C/rd_mcp_1/rd0/enable
echo 7 > $C/rd_mcp_1/rd0/enable 2>/dev/null && exit 1   # refused: EINVAL
echo 1 > $C/fileio_0/disk0/attrib/emulate_tpu
echo 4096 > $C/rd_mcp_1/rd0/attrib/block_size 2>/dev/null || true
mkdir $C/fileio_0/disk0/alua/ao $C/fileio_0/disk0/alua/standby
echo 10 > $C/fileio_0/disk0/alua/ao/tg_pt_gp_id
echo 11 > $C/fileio_0/disk0/alua/standby/tg_pt_gp_id
echo 2 > $C/fileio_0/disk0/alua/standby/alua_access_state
echo 9 > $C/fileio_0/disk0/alua/standby/alua_access_state 2>/dev/null && exit 1   # refused
mkdir $C/alua/lu_gps/lugp1
echo 3 > $C/alua/lu_gps/lugp1/lu_gp_id
echo lugp1 > $C/fileio_0/disk0/alua_lu_gp
mkdir -p $I/$IQN/tpgt_1/lun/lun_0 $I/$IQN/tpgt_1/lun/lun_1
ln -s $C/fileio_0/disk0 $I/$IQN/tpgt_1/lun/lun_0/vol0
ln -s $C/rd_mcp_1/rd0 $I/$IQN/tpgt_1/lun/lun_1/vol1
echo ao > $I/$IQN/tpgt_1/lun/lun_0/alua_tg_pt_gp
mkdir $I/$IQN/tpgt_1/np/127.0.0.1:$3
mkdir -p $I/$IQN/tpgt_1/acls/$INIT/lun_5
ln -s $I/$IQN/tpgt_1/lun/lun_0 $I/$IQN/tpgt_1/acls/$INIT/lun_5/map0
echo 1 > $I/$IQN/tpgt_1/acls/$INIT/lun_5/write_protect
echo 64 > $I/$IQN/tpgt_1/acls/$INIT/cmdsn_depth
echo 0 > $I/$IQN/tpgt_1/attrib/authentication
echo 1 > $I/$IQN/tpgt_1/enable
mkdir -p $I/$IQN/tpgt_2/acls/$INIT
rmdir $I/$IQN/tpgt_2/acls/$INIT $I/$IQN/tpgt_2
mkdir $I/$IQN/tpgt_1/lun/lun_0 2>/dev/null && exit 1   # refused: EEXIST
echo 2048 > $C/fileio_0/disk0/attrib/block_size 2>/dev/null && exit 1   # refused: exported
exit 0
