import { GroupCommit } from '../../shared/group-commit.ts'
import { signClaims, type WorkerClaim, type WorkerReceipt } from '../../shared/receipt.ts'

// A worker's usage receipts (the format: shared/receipt.ts). The receipts of the requests that end in
// the same turn of the event loop are signed together, with one signature over their Merkle root:
// under load a receipt costs a fraction of a signature, and a lone request waits for nothing.

export class ReceiptSigner {
  private readonly batches: GroupCommit<WorkerClaim, WorkerReceipt>

  constructor (secretKey: Buffer) {
    this.batches = new GroupCommit(async (claims) => signClaims(claims, secretKey))
  }

  sign (claim: WorkerClaim): Promise<WorkerReceipt> {
    return this.batches.add(claim)
  }
}
