using System.Text;

namespace OrasStaging.DiskImages;

/// <summary>
/// The disk file of a KubeVirt containerDisk layer, read forward only out of the decoded tar stream: headers are
/// parsed as they pass (ustar, pax and GNU long names; sizes in octal or base-256), other members are skipped, and
/// the first regular file directly under <c>disk/</c> is handed on byte for byte. Nothing is written to disk
/// beside it: no temporary tar, no temporary image.
/// </summary>
internal sealed class TarMemberStream : ForwardReadStream
{
    public const string DiskFolder = "disk/";
    private const int Block = 512;

    private readonly Stream _tar;
    private long _remaining;

    private TarMemberStream(Stream tar, string path, long size)
    {
        _tar = tar;
        MemberPath = path;
        MemberSize = size;
        _remaining = size;
    }

    /// <summary>The member's path inside the tar, e.g. "disk/fedora.qcow2".</summary>
    public string MemberPath { get; }

    public long MemberSize { get; }

    /// <summary>
    /// The decoded stream itself when it is no tar; else the disk member of the tar: <paramref name="memberPath"/>
    /// when the resolve step named it (the layer search read these headers already), else the first regular file
    /// under disk/. UnsupportedFormat when the tar holds no such file (whiteouts noted), CorruptInput when a header
    /// is damaged or the tar ends early.
    /// </summary>
    public static Stream Unwrap(Stream decoded, string? memberPath = null, Action<string>? verbose = null)
    {
        var head = new byte[Block];
        int got = ReadFull(decoded, head);
        if (got < Block || !ImageFormatDetector.IsTar(head))
        {
            return new PrefixedStream(head.AsSpan(0, got).ToArray(), decoded);
        }

        var scan = Walk(decoded, head, path => memberPath is null ? !Whiteouts.IsHidden(path, null) : path == memberPath);
        var member = scan.Found ?? throw NoDisk(scan, memberPath);
        verbose?.Invoke($"The layer is a tar (a containerDisk); its disk is {member.MemberPath} ({Units.Bytes(member.MemberSize)}).");
        return member;
    }

    /// <summary>
    /// For the layer search of a containerDisk: null when <paramref name="decoded"/> is no tar; else what the tar
    /// holds: the first regular file under disk/ that <paramref name="hidden"/> (whiteouts of the layers above)
    /// does not hide, positioned at its data, and the whiteouts this layer adds for the layers below.
    /// </summary>
    public static TarScan? Scan(Stream decoded, Whiteouts hidden)
    {
        var head = new byte[Block];
        int got = ReadFull(decoded, head);
        if (got < Block || !ImageFormatDetector.IsTar(head))
        {
            return null;
        }

        return Walk(decoded, head, path => !Whiteouts.IsHidden(path, hidden));
    }

    /// <summary>What one pass over a tar's headers found.</summary>
    internal sealed class TarScan
    {
        public TarMemberStream? Found { get; set; }

        public List<string> Seen { get; } = new();

        /// <summary>The whiteout entries of this layer (paths as in the tar, e.g. disk/.wh.old.qcow2).</summary>
        public List<string> WhiteoutPaths { get; } = new();
    }

    /// <summary>Walks the headers from <paramref name="first"/> (already read) to the first disk member <paramref name="accept"/> takes.</summary>
    private static TarScan Walk(Stream tar, byte[] first, Func<string, bool> accept)
    {
        var scan = new TarScan();
        var header = first;
        string? longName = null;
        string? paxPath = null;
        long? paxSize = null;
        while (true)
        {
            if (header.AsSpan().IndexOfAnyExcept((byte)0) < 0)
            {
                // The end-of-archive marker: two zero blocks (one is enough to know).
                return scan;
            }

            VerifyChecksum(header);
            char type = (char)header[156];
            long size = paxSize ?? ParseNumber(header.AsSpan(124, 12), "size");
            string path = Normalize(paxPath ?? longName ?? HeaderName(header));
            longName = null;
            paxPath = null;
            paxSize = null;
            switch (type)
            {
                case 'L':
                    longName = Encoding.UTF8.GetString(ReadData(tar, size)).TrimEnd('\0');
                    break;
                case 'x':
                    (paxPath, paxSize) = ParsePax(ReadData(tar, size));
                    break;
                case '0' or '\0' or '7' when IsDiskPath(path) && accept(path):
                    scan.Found = new TarMemberStream(tar, path, size);
                    return scan;
                case '1' or '2' when IsDiskPath(path) && accept(path):
                    throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                        $"The containerDisk's {path} is a {(type == '1' ? "hard" : "symbolic")} link, not a regular file.",
                        "Publish the disk as a regular file under disk/.");
                default:
                    if (Whiteouts.IsWhiteout(path))
                    {
                        scan.WhiteoutPaths.Add(path);
                    }
                    else if (scan.Seen.Count < 8)
                    {
                        scan.Seen.Add(path);
                    }

                    Skip(tar, type is '1' or '2' or '3' or '4' or '5' or '6' ? 0 : size);
                    break;
            }

            header = new byte[Block];
            if (ReadFull(tar, header) < Block)
            {
                throw new OrasStagingException(ErrorCode.CorruptInput, "The tar layer ends in the middle of a header.",
                    "Download it again; if it persists, the published layer is damaged.");
            }
        }
    }

    private static OrasStagingException NoDisk(TarScan scan, string? memberPath) =>
        new(ErrorCode.UnsupportedFormat,
            (memberPath is null
                ? $"The decoded layer is a tar archive with no regular file under {DiskFolder}, so it is not a containerDisk"
                : $"The decoded layer is a tar archive without {memberPath}, the disk its image was resolved to")
            + (scan.WhiteoutPaths.Count > 0 ? $" (it deletes {string.Join(", ", scan.WhiteoutPaths)})" : string.Empty)
            + (scan.Seen.Count > 0 ? $"; it holds {string.Join(", ", scan.Seen)}" : "; it is empty") + ". Nothing was written.",
            "Check the reference: a containerDisk image carries its disk as disk/<name>.qcow2 or .img in its top layer.");

    /// <summary>A regular file directly under disk/ that is not a whiteout.</summary>
    private static bool IsDiskPath(string path) =>
        path.StartsWith(DiskFolder, StringComparison.Ordinal) && path.Length > DiskFolder.Length
        && path.IndexOf('/', DiskFolder.Length) < 0 && !Whiteouts.IsWhiteout(path);

    private static string Normalize(string path)
    {
        while (path.StartsWith("./", StringComparison.Ordinal))
        {
            path = path[2..];
        }

        return path.TrimStart('/');
    }

    private static string HeaderName(byte[] h)
    {
        string name = CString(h.AsSpan(0, 100));
        // ustar's prefix field (345..500); GNU tars use those bytes otherwise, and mark themselves "ustar  ".
        bool posix = h[262] == 0 && h[263] == (byte)'0';
        string prefix = posix ? CString(h.AsSpan(345, 155)) : string.Empty;
        return prefix.Length > 0 ? prefix + "/" + name : name;
    }

    private static string CString(ReadOnlySpan<byte> field)
    {
        int end = field.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? field : field[..end]);
    }

    /// <summary>Octal (space or NUL padded), or GNU base-256 when the high bit of the first byte is set.</summary>
    internal static long ParseNumber(ReadOnlySpan<byte> field, string what)
    {
        if ((field[0] & 0x80) != 0)
        {
            if ((field[0] & 0x40) != 0)
            {
                throw Corrupt($"a negative {what}");
            }

            long value = field[0] & 0x3F;
            for (int i = 1; i < field.Length; i++)
            {
                if (value > (long.MaxValue >> 8))
                {
                    throw Corrupt($"a {what} too large");
                }

                value = (value << 8) | field[i];
            }

            return value;
        }

        long octal = 0;
        bool any = false;
        foreach (byte b in field)
        {
            if (b is 0 or (byte)' ')
            {
                if (any)
                {
                    break;
                }

                continue;
            }

            if (b is < (byte)'0' or > (byte)'7' || octal > (long.MaxValue >> 3))
            {
                throw Corrupt($"an unreadable {what}");
            }

            octal = (octal << 3) | (long)(b - '0');
            any = true;
        }

        return octal;
    }

    private static void VerifyChecksum(byte[] h)
    {
        long stored = ParseNumber(h.AsSpan(148, 8), "checksum");
        long sum = 0;
        for (int i = 0; i < Block; i++)
        {
            sum += i is >= 148 and < 156 ? (byte)' ' : h[i];
        }

        if (sum != stored)
        {
            throw Corrupt("a header whose checksum does not match");
        }
    }

    /// <summary>Records "LEN key=value\n"; only path and size matter here.</summary>
    private static (string? Path, long? Size) ParsePax(byte[] data)
    {
        string? path = null;
        long? size = null;
        int pos = 0;
        while (pos < data.Length && data[pos] != 0)
        {
            int space = Array.IndexOf(data, (byte)' ', pos);
            if (space < 0 || !int.TryParse(Encoding.ASCII.GetString(data, pos, space - pos), out int length)
                || length <= space - pos || pos + length > data.Length)
            {
                throw Corrupt("a malformed pax header");
            }

            string record = Encoding.UTF8.GetString(data, space + 1, pos + length - space - 2);
            int eq = record.IndexOf('=');
            if (eq > 0)
            {
                string key = record[..eq];
                string value = record[(eq + 1)..];
                if (key == "path")
                {
                    path = value;
                }
                else if (key == "size")
                {
                    size = long.TryParse(value, out long s) && s >= 0 ? s : throw Corrupt("a malformed pax size");
                }
            }

            pos += length;
        }

        return (path, size);
    }

    private static byte[] ReadData(Stream tar, long size)
    {
        if (size > 1 << 20)
        {
            throw Corrupt("an extended header over 1 MiB");
        }

        var data = new byte[(int)size];
        if (ReadFull(tar, data) < data.Length)
        {
            throw Corrupt("an extended header cut short");
        }

        SkipBytes(tar, Padding(size));
        return data;
    }

    private static long Padding(long size) => (Block - (size % Block)) % Block;

    /// <summary>A member's data and its padding to the next 512-byte block.</summary>
    private static void Skip(Stream tar, long size) => SkipBytes(tar, size + Padding(size));

    private static void SkipBytes(Stream tar, long left)
    {
        var scratch = new byte[Math.Min(left, 1 << 16)];
        while (left > 0)
        {
            int n = tar.Read(scratch, 0, (int)Math.Min(left, scratch.Length));
            if (n == 0)
            {
                throw Corrupt("a member cut short");
            }

            left -= n;
        }
    }

    private static int ReadFull(Stream s, byte[] buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = s.Read(buffer, total, buffer.Length - total);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        return total;
    }

    private static OrasStagingException Corrupt(string what) =>
        new(ErrorCode.CorruptInput, $"The tar layer has {what}.", "Download it again; if it persists, the published layer is damaged.");

    public override int Read(Span<byte> buffer)
    {
        if (_remaining == 0 || buffer.IsEmpty)
        {
            return 0;
        }

        int n = _tar.Read(buffer[..(int)Math.Min(buffer.Length, _remaining)]);
        if (n == 0)
        {
            throw new OrasStagingException(ErrorCode.CorruptInput,
                $"The tar layer ends {Units.Bytes(_remaining)} before the end of {MemberPath}.",
                "Download it again; if it persists, the published layer is damaged.");
        }

        _remaining -= n;
        return n;
    }

    public override long Position { get => MemberSize - _remaining; set => throw new NotSupportedException(); }
}

/// <summary>
/// The OCI layer whiteouts (image-spec layer.md): in a layer, <c>dir/.wh.name</c> deletes <c>dir/name</c> of the
/// layers below, and <c>dir/.wh..wh..opq</c> hides everything the layers below have under <c>dir/</c>. Collected
/// from the top layer down; a layer's own whiteouts apply only to the layers under it.
/// </summary>
internal sealed class Whiteouts
{
    private const string Prefix = ".wh.";
    private const string Opaque = ".wh..wh..opq";
    private readonly HashSet<string> _deleted = new(StringComparer.Ordinal);
    private readonly HashSet<string> _opaque = new(StringComparer.Ordinal);

    public static bool IsWhiteout(string path) =>
        path.StartsWith(Prefix, StringComparison.Ordinal) || path.Contains("/" + Prefix, StringComparison.Ordinal);

    /// <summary>Adds the whiteout entries of one layer (call after that layer was searched).</summary>
    public void Add(IEnumerable<string> whiteoutPaths)
    {
        foreach (string path in whiteoutPaths)
        {
            int slash = path.LastIndexOf('/');
            string dir = slash < 0 ? string.Empty : path[..slash];
            string name = path[(slash + 1)..];
            if (name == Opaque)
            {
                _opaque.Add(dir);
            }
            else if (name.StartsWith(Prefix, StringComparison.Ordinal))
            {
                _deleted.Add((dir.Length == 0 ? string.Empty : dir + "/") + name[Prefix.Length..]);
            }
        }
    }

    /// <summary>True when an upper layer deleted <paramref name="path"/>, a folder above it, or made a folder above it opaque.</summary>
    public static bool IsHidden(string path, Whiteouts? upper)
    {
        if (upper is null)
        {
            return false;
        }

        string current = path;
        while (true)
        {
            if (upper._deleted.Contains(current))
            {
                return true;
            }

            int slash = current.LastIndexOf('/');
            string parent = slash < 0 ? string.Empty : current[..slash];
            if (upper._opaque.Contains(parent))
            {
                return true;
            }

            if (slash < 0)
            {
                return false;
            }

            current = parent;
        }
    }

    public override string ToString() => string.Join(", ", _deleted.Concat(_opaque.Select(o => o + "/" + Opaque)));
}
