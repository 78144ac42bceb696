modprobe target_core_mod
export CONFIGFS=/sys/kernel/config/
export TARGET=/sys/kernel/config/target/core/
export FABRIC=/sys/kernel/config/target/iscsi/
# START IBLOCK SUBSYSTEM PLUGIN EXPORT
mkdir -p $TARGET/iblock_0/lvm_test0
# This enabled NAA WWN 0x83 VPN descriptors
echo a97e4ce21c0711de829b000c2943d57b > $TARGET/iblock_0/lvm_test0/wwn/vpd_unit_serial
# Major/minor method for referencing struct block_device..
# echo iblock_major=254,iblock_minor=2 > $TARGET/iblock_0/lvm_test0/control
# echo 1 > $TARGET/iblock_0/lvm_test0/enable
# OR, locate struct block_device from passed file descriptor..
exec 3<>/dev/lio-test/test0
echo 3 > $TARGET/iblock_0/lvm_test0/fd
exec 3>&-
# Enable 4096 sector size emulation
echo 4096 > $TARGET/iblock_0/lvm_test0/attrib/block_size
# More tunables for target_core_mod
# echo 0 > $TARGET/iblock_0/lvm_test0/attrib/emulate_tas
echo 0 > $TARGET/iblock_0/lvm_test0/attrib/emulate_ua_intlck_ctrl
# END IBLOCK SUBSYSTEM PLUGIN EXPORT
# START PSCSI SUBSYSTEM PLUGIN EXPORT
mkdir -p $TARGET/pscsi_0/sdd
# This is only limited to t10 vendor type WWN naming..
echo 66e418b4-e9ab-11dd-8f51-000c2943d57b > $TARGET/pscsi_0/sdd/wwn/vpd_unit_serial
# Linux/SCSI HCTL method of locating struct scsi_device
# echo scsi_channel_id=0,scsi_target_id=3,scsi_lun_id=0 > $TARGET/pscsi_0/sdd/control
# echo 1 > $TARGET/pscsi_0/sdd/enable
# or, locate struct scsi_device from file descriptor (only for TYPE_DISK+TYPE_ROM)
exec 3<>/dev/sdd
echo 3 > $TARGET/pscsi_0/sdd/fd
exec 3>&-
# END PSCSI SUBSYSTEM PLUGIN EXPORT
# START RAMDISK SUBSYSTEM PLUGIN OBJECTS
mkdir -p $TARGET/rd_mcp_0/ramdisk
echo rd_pages=32768 > $TARGET/rd_mcp_0/ramdisk/control
echo 1 > $TARGET/rd_mcp_0/ramdisk/enable
# END RAMDISK SUBSYSTEM PLUGIN OBJECTS
# START FILEIO SUBSYSTEM PLUGIN OBJECTS
mkdir -p $TARGET/fileio_0/fileio
# Note that using a backing struct block_device for fd_dev_name will automatically locate fd_dev_size,
# otherwise this value is in bytes..
echo "fd_dev_name=/dev/sde,fd_dev_size=134217728" > $TARGET/fileio_0/fileio/control
echo 1 > $TARGET/fileio_0/fileio/enable
# END FILEIO SUBSYSTEM PLUGIN OBJECTS
