"""Scale-out training on torch.distributed (launched by torchrun): data parallel (DDP,
FSDP2), tensor parallel (DTensor) and pipeline parallel (torch.distributed.pipelining)."""
