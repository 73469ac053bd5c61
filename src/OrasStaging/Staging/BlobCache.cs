using System.Security.Cryptography;
using OrasStaging.IO;
using DigestRules = OrasStaging.Oci.Digest;

namespace OrasStaging.Staging;

/// <summary>
/// The <c>-KeepBlob</c> folder: verified compressed blobs stored by digest (<c>&lt;folder&gt;/sha256/&lt;hex&gt;</c>),
/// so later runs and other targets read them instead of the network. A blob only gets its final name after
/// every byte passed the digest check.
/// </summary>
internal sealed class BlobCache
{
    private readonly string _root;

    public BlobCache(string root) => _root = root;

    public string PathFor(string digest)
    {
        if (!DigestRules.IsValid(digest))
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument, $"'{digest}' is not a digest.");
        }

        var (algorithm, hex) = DigestRules.Split(digest);
        return Path.Combine(_root, algorithm, hex);
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
}

/// <summary>Copies what it reads into <c>&lt;final&gt;.&lt;random&gt;.partial</c>; <see cref="Commit"/> renames it once the end was read.</summary>
internal sealed class TeeStream : PassThroughStream
{
    private readonly PartialFile _partial;
    private readonly FileStream _copy;
    private bool _sawEnd;

    public TeeStream(Stream source, string final)
        : base(source)
    {
        _partial = PartialFile.RandomBeside(final);
        _copy = new FileStream(_partial.PartialPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
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
        _partial.Commit();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _copy.Dispose();
            _partial.Dispose();

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
        _hash = DigestRules.CreateHash(digest);
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
        string actual = DigestRules.Format(_digest, _hash.GetHashAndReset());
        if (!DigestRules.AreEqual(actual, _digest))
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
