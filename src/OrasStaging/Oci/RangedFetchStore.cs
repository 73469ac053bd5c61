using System.Buffers;

namespace OrasStaging.Oci;

/// <summary>
/// Where <see cref="RangedFetch"/> keeps ranges on disk as they finish (Save-OrasBlob): a range already stored is
/// read back for the in-order hash instead of fetched, and a fetched one is written at its offset before it is
/// handed on. Without a store, ranges live only in the reorder buffer (an install streams into the decoder).
/// </summary>
internal interface IRangeStore
{
    bool IsStored(long from, long count);

    /// <summary>Reads [from, end) into pooled buffers appended to <paramref name="pieces"/>.</summary>
    Task ReadAsync(long from, long end, List<(byte[] Buffer, int Count)> pieces, CancellationToken ct);

    /// <summary>Writes the pieces at <paramref name="from"/> and records them; the pieces stay the caller's.</summary>
    Task StoreAsync(long from, List<(byte[] Buffer, int Count)> pieces, CancellationToken ct);
}

/// <summary>The <c>.partial</c> of Save-OrasBlob with its <see cref="RangeLedger"/>: ranges written at their offsets.</summary>
internal sealed class PartialRangeStore(FileStream file, RangeLedger ledger) : IRangeStore
{
    public bool IsStored(long from, long count) => ledger.IsStored(from, count);

    public async Task ReadAsync(long from, long end, List<(byte[] Buffer, int Count)> pieces, CancellationToken ct)
    {
        long at = from;
        while (at < end)
        {
            byte[] buffer = ArrayPool<byte>.Shared.Rent(RegistryClient.BufferSize);
            int filled;
            try
            {
                filled = await RandomAccess.ReadAsync(file.SafeFileHandle, buffer.AsMemory(0, (int)Math.Min(buffer.Length, end - at)), at, ct)
                    .ConfigureAwait(false);
            }
            catch
            {
                ArrayPool<byte>.Shared.Return(buffer);
                throw;
            }

            if (filled == 0)
            {
                ArrayPool<byte>.Shared.Return(buffer);
                throw new OrasStagingException(ErrorCode.DigestMismatch,
                    $"'{file.Name}' ends at {Units.Bytes(at)}, before the ranges its record says it holds; the bytes were discarded.",
                    "Run the command again; the blob is then downloaded anew.");
            }

            pieces.Add((buffer, filled));
            at += filled;
        }
    }

    public async Task StoreAsync(long from, List<(byte[] Buffer, int Count)> pieces, CancellationToken ct)
    {
        long at = from;
        foreach (var (buffer, count) in pieces)
        {
            await RandomAccess.WriteAsync(file.SafeFileHandle, buffer.AsMemory(0, count), at, ct).ConfigureAwait(false);
            at += count;
        }

        ledger.MarkRange(from, at);
    }
}
