using System.Security.Cryptography;

namespace OrasStaging.Oci;

/// <summary>Hashing per a digest's algorithm (sha256 or sha512).</summary>
internal static class BlobDigest
{
    public static IncrementalHash CreateHash(string digest) => IncrementalHash.CreateHash(AlgorithmOf(digest));

    public static HashAlgorithmName AlgorithmOf(string digest) =>
        digest.StartsWith("sha512:", StringComparison.Ordinal) ? HashAlgorithmName.SHA512
        : digest.StartsWith("sha256:", StringComparison.Ordinal) ? HashAlgorithmName.SHA256
        : throw new OrasStagingException(ErrorCode.RegistryProtocolError, $"The digest '{digest}' uses an algorithm this client cannot verify.");

    public static string Format(string digest, byte[] hash) =>
        digest[..digest.IndexOf(':')] + ":" + Convert.ToHexString(hash).ToLowerInvariant();

    public static string Compute(string algorithmOf, ReadOnlySpan<byte> data)
    {
        using var hash = CreateHash(algorithmOf);
        hash.AppendData(data);
        return Format(algorithmOf, hash.GetHashAndReset());
    }

    public static async Task<string> ComputeFileAsync(string path, string algorithmOf, CancellationToken ct)
    {
        using var hash = CreateHash(algorithmOf);
        await using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan | FileOptions.Asynchronous);
        byte[] buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            int read;
            while ((read = await fs.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
            {
                hash.AppendData(buffer, 0, read);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }

        return Format(algorithmOf, hash.GetHashAndReset());
    }
}
