using System.Security.Cryptography;

namespace OrasStaging.Staging;

/// <summary>
/// The <c>-KeepBlob</c> folder: verified compressed blobs stored by digest (<c>&lt;folder&gt;/sha256/&lt;hex&gt;</c>),
/// so later runs and other targets read them instead of the network. A blob only gets its final name after
/// every byte passed the digest check.
/// </summary>
internal sealed class BlobCache
{
    private static readonly System.Text.RegularExpressions.Regex DigestPattern =
        new("^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$", System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    private readonly string _root;

    public BlobCache(string root) => _root = root;

    public string PathFor(string digest)
    {
        int colon = digest.IndexOf(':');
        if (!DigestPattern.IsMatch(digest))
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument, $"'{digest}' is not a digest.");
        }

        return Path.Combine(_root, digest[..colon], digest[(colon + 1)..]);
    }

    public bool Contains(string digest) => File.Exists(PathFor(digest));

    /// <summary>Opens a kept blob; reading it to the end checks its digest again, since files can rot.</summary>
    public Stream Open(string digest)
    {
        var file = new FileStream(PathFor(digest), FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16,
            FileOptions.SequentialScan);
        return new VerifyingStream(file, digest);
    }

    /// <summary>Wraps the network stream so every byte read is also written to a partial file in the cache.</summary>
    public TeeStream Tee(Stream source, string digest)
    {
        string final = PathFor(digest);
        Directory.CreateDirectory(Path.GetDirectoryName(final)!);
        return new TeeStream(source, final);
    }

    public static HashAlgorithmName? AlgorithmOf(string digest) =>
        digest.StartsWith("sha256:", StringComparison.OrdinalIgnoreCase) ? HashAlgorithmName.SHA256
        : digest.StartsWith("sha512:", StringComparison.OrdinalIgnoreCase) ? HashAlgorithmName.SHA512
        : null;
}

/// <summary>Copies what it reads into <c>&lt;final&gt;.&lt;random&gt;.partial</c>; <see cref="Commit"/> renames it once the end was read.</summary>
internal sealed class TeeStream : PassThroughStream
{
    private readonly string _final;
    private readonly string _partial;
    private readonly FileStream _copy;
    private bool _sawEnd;
    private bool _committed;

    public TeeStream(Stream source, string final)
        : base(source)
    {
        _final = final;
        _partial = $"{final}.{AtomicFile.RandomToken()}.partial";
        _copy = new FileStream(_partial, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
    }

    protected override void Observe(ReadOnlySpan<byte> data)
    {
        if (data.Length == 0)
        {
            // The source returned its end without throwing: it verified the digest.
            _sawEnd = true;
            return;
        }

        _copy.Write(data);
    }

    /// <summary>Keeps the blob under its digest. Only valid after the source was read to its end.</summary>
    public void Commit()
    {
        if (!_sawEnd)
        {
            throw new InvalidOperationException("The blob was not read to its end; it is not verified.");
        }

        _copy.Flush(flushToDisk: true);
        _copy.Dispose();
        File.Move(_partial, _final, overwrite: true);
        _committed = true;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _copy.Dispose();
            if (!_committed)
            {
                AtomicFile.TryDelete(_partial);
            }

            Source.Dispose();
        }

        base.Dispose(disposing);
    }
}

/// <summary>Hashes what passes through and throws DigestMismatch at the end when it does not match.</summary>
internal sealed class VerifyingStream : PassThroughStream
{
    private readonly string _digest;
    private readonly IncrementalHash _hash;
    private bool _checked;

    public VerifyingStream(Stream source, string digest)
        : base(source)
    {
        _digest = digest;
        var algorithm = BlobCache.AlgorithmOf(digest)
            ?? throw new OrasStagingException(ErrorCode.DigestMismatch, $"The digest algorithm of '{digest}' is not supported.");
        _hash = IncrementalHash.CreateHash(algorithm);
    }

    protected override void Observe(ReadOnlySpan<byte> data)
    {
        if (data.Length > 0)
        {
            _hash.AppendData(data);
            return;
        }

        if (_checked)
        {
            return;
        }

        _checked = true;
        string actual = _digest[.._digest.IndexOf(':')].ToLowerInvariant() + ":"
            + Convert.ToHexString(_hash.GetHashAndReset()).ToLowerInvariant();
        if (!string.Equals(actual, _digest, StringComparison.OrdinalIgnoreCase))
        {
            throw new OrasStagingException(ErrorCode.DigestMismatch,
                $"The kept blob for {_digest} hashes to {actual}; it is damaged.",
                "Run again: a damaged kept blob is removed and downloaded anew (-Force also bypasses it).");
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _hash.Dispose();
            Source.Dispose();
        }

        base.Dispose(disposing);
    }
}
