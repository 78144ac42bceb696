"""Constants of the T10 standards, one module per standard, shared by the core, the SCSI
engine and ``simfs show`` (the kernel's include/scsi/scsi_proto.h and target headers)."""
