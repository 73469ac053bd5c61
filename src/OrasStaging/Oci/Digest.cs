using System.Buffers;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace OrasStaging.Oci;

/// <summary>
/// The one home of the digest rules (OCI image-spec, descriptor.md "Digests"): the grammar this client accepts,
/// the algorithm a digest names, hashing by that algorithm, and comparison. <c>Digest</c> in this module always
/// means a content digest <c>algorithm:hex</c>; only sha256 and sha512 are accepted, because only those can be
/// verified, and a digest that cannot be verified must never be trusted.
/// </summary>
internal static partial class Digest
{
    public const string Sha256Prefix = "sha256:";
    public const string Sha512Prefix = "sha512:";

    // \z, not $: '$' also matches before a final newline, so "sha256:<hex>\n" would pass.
    [GeneratedRegex(@"\A(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})\z", RegexOptions.CultureInvariant)]
    private static partial Regex Pattern();

    /// <summary>The pattern text, for callers that embed it in a larger grammar (references, completion).</summary>
    public const string PatternText = @"(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})";

    /// <summary>True for a digest this module can verify: sha256 or sha512, lower-case hex, nothing around it.</summary>
    public static bool IsValid(string? digest) => digest is not null && Pattern().IsMatch(digest);

    /// <summary>
    /// The hash algorithm a digest names. A digest of another algorithm (or none) is <see cref="ErrorCode.UnsupportedFormat"/>:
    /// it is not a mismatch, it is something this client cannot check.
    /// </summary>
    public static HashAlgorithmName AlgorithmOf(string digest) =>
        TryGetAlgorithm(digest, out var algorithm)
            ? algorithm
            : throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                $"The digest '{Redaction.Text(digest)}' uses an algorithm this client cannot verify (only sha256 and sha512).",
                "Publish the artifact with a sha256 digest.");

    /// <summary>The algorithm of a well-formed digest; false for anything <see cref="IsValid"/> refuses.</summary>
    public static bool TryGetAlgorithm(string? digest, out HashAlgorithmName algorithm)
    {
        algorithm = default;
        if (!IsValid(digest))
        {
            return false;
        }

        algorithm = digest!.StartsWith(Sha512Prefix, StringComparison.Ordinal) ? HashAlgorithmName.SHA512 : HashAlgorithmName.SHA256;
        return true;
    }

    /// <summary>The algorithm name ("sha256") and the hex part of a valid digest.</summary>
    public static (string Algorithm, string Hex) Split(string digest)
    {
        AlgorithmOf(digest);
        int colon = digest.IndexOf(':');
        return (digest[..colon], digest[(colon + 1)..]);
    }

    /// <summary>
    /// Equality of two digests. Both must be valid, so a stamp holding garbage never equals anything. Surrounding
    /// white space is ignored (a stamp file written by another tool may end in a newline); case is not, because
    /// the grammar is lower-case only.
    /// </summary>
    public static bool AreEqual(string? a, string? b)
    {
        string? x = a?.Trim();
        string? y = b?.Trim();
        return IsValid(x) && IsValid(y) && string.Equals(x, y, StringComparison.Ordinal);
    }

    public static IncrementalHash CreateHash(string digest) => IncrementalHash.CreateHash(AlgorithmOf(digest));

    /// <summary>A digest of the same algorithm as <paramref name="algorithmOf"/> for a finished hash.</summary>
    public static string Format(string algorithmOf, byte[] hash) =>
        algorithmOf[..algorithmOf.IndexOf(':')] + ":" + Convert.ToHexString(hash).ToLowerInvariant();

    /// <summary>The digest of <paramref name="data"/> in the algorithm of <paramref name="algorithmOf"/> ("sha256:" will do).</summary>
    public static string Compute(string algorithmOf, ReadOnlySpan<byte> data)
    {
        using var hash = IncrementalHash.CreateHash(AlgorithmOfPrefix(algorithmOf));
        hash.AppendData(data);
        return Format(algorithmOf, hash.GetHashAndReset());
    }

    public static async Task<string> ComputeFileAsync(string path, string algorithmOf, CancellationToken ct)
    {
        using var hash = IncrementalHash.CreateHash(AlgorithmOfPrefix(algorithmOf));
        await using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1,
            FileOptions.SequentialScan | FileOptions.Asynchronous);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
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
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return Format(algorithmOf, hash.GetHashAndReset());
    }

    // Compute accepts a bare prefix ("sha256:") as well as a whole digest, to hash content whose digest is unknown.
    private static HashAlgorithmName AlgorithmOfPrefix(string algorithmOf) =>
        algorithmOf.StartsWith(Sha512Prefix, StringComparison.Ordinal) ? HashAlgorithmName.SHA512
        : algorithmOf.StartsWith(Sha256Prefix, StringComparison.Ordinal) ? HashAlgorithmName.SHA256
        : AlgorithmOf(algorithmOf);
}
