#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }

# The publishers' conventions (docs/CONVENTIONS.md) against the real registry: KubeVirt containerDisks (docker v2
# and OCI, gzip, zstd and plain tar layers, several layers, whiteouts), podman machine-os and CoreOS/Konflux
# indexes of one disk per type, KubeVirt VEP 256 disk artifacts, and payloads that are no disk. Fixtures are pushed
# with the TestKit's push-layout in the publishers' shapes, and once with real buildah. qemu-img is the oracle.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    Import-Module $env:ORASSTAGING_MODULE -Force
    $script:QemuImg = (Get-Command qemu-img -ErrorAction Stop).Source

    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("orasstaging-conv-" + [guid]::NewGuid().ToString('n').Substring(0, 8))
    $null = New-Item -ItemType Directory -Force $Work
    $script:Raw = (New-TestDiskImage -Path (Join-Path $Work 'disk.img') -Size (3MB + 1536) -Seed 31).FullName
    $script:Other = (New-TestDiskImage -Path (Join-Path $Work 'other.img') -Size (2MB) -Seed 32).FullName
    # What containerDisks and podman's qemu images hold: a compressed qcow2.
    $script:Qcow2 = Join-Path $Work 'disk.qcow2'
    & $QemuImg convert -c -f raw -O qcow2 $Raw $Qcow2
    if ($LASTEXITCODE -ne 0) { throw 'qemu-img convert failed' }
    $script:Vhdx = Join-Path $Work 'disk.vhdx'
    & $QemuImg convert -f raw -O vhdx $Other $Vhdx
    if ($LASTEXITCODE -ne 0) { throw 'qemu-img convert failed' }

    $script:Registry = Start-TestRegistry -Auth anonymous
    $script:Host_ = $Registry.registry

    function script:New-Folder {
        $folder = Join-Path $Work ([guid]::NewGuid().ToString('n').Substring(0, 8))
        (New-Item -ItemType Directory -Force $folder).FullName
    }

    function script:Get-FolderNames([string] $Target) {
        @(Get-ChildItem (Split-Path $Target) -Force | ForEach-Object Name | Sort-Object)
    }

    # The image reads as the source disk (a larger virtual size must read as zeros beyond it).
    function script:Assert-Same([string] $Image, [string] $Format, [long] $VirtualSize, [string] $Source = $Raw) {
        $info = & $QemuImg info --output=json -f $Format $Image | ConvertFrom-Json
        $info.'virtual-size' | Should -Be $VirtualSize
        $out = & $QemuImg compare -f raw -F $Format $Source $Image 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($out -join "`n")
    }

    # A containerDisk as KubeVirt's docs build it: FROM scratch, ADD --chown=107:107 <disk> /disk/.
    function script:Get-DiskLayer([string] $File, [string] $Name, [string] $Compression = 'gzip', [string] $TarFormat = 'ustar') {
        @{
            compression = $Compression; tarFormat = $TarFormat
            tar         = @(
                @{ path = 'disk/'; type = 'dir'; uid = 107; gid = 107 }
                @{ path = "disk/$Name"; file = $File; uid = 107; gid = 107 }
            )
        }
    }

    function script:Publish-ContainerDisk([string] $Repository, [string] $Tag, [string] $MediaType, [object[]] $Layers) {
        Publish-TestLayout -Registry $Registry -Repository $Repository -Tag $Tag -Spec @{ manifests = @(@{ mediaType = $MediaType; layers = $Layers }) }
    }

    # The error record of a call that must fail (and output nothing).
    function script:Invoke-Failing([scriptblock] $Action) {
        $ErrorActionPreference = 'Stop'
        $output = $null
        try { $output = & $Action } catch { return $_ }
        throw "Expected a failure, got: $output"
    }

    # Compressed disks, as podman and VEP 256 publish them (zstd), and CoreOS (gzip).
    $script:QcowZst = "$Qcow2.zst"; & zstd -q -f $Qcow2 -o $QcowZst
    $script:RawZst = "$Raw.zst"; & zstd -q -f $Raw -o $RawZst
    $script:OtherZst = "$Other.zst"; & zstd -q -f $Other -o $OtherZst
    $script:VhdxZst = "$Vhdx.zst"; & zstd -q -f $Vhdx -o $VhdxZst
    $script:RawGz = "$Raw.gz"; & gzip -c -1 $Raw > $RawGz
}

AfterAll {
    if ($script:Registry) { Stop-TestRegistry $Registry }
    if ($script:Work) { Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue }
}

Describe 'KubeVirt containerDisk' {
    BeforeAll {
        $script:Cases = @(
            @{ Name = 'docker v2, gzip, qcow2'; Tag = 'docker-gz-qcow2'; MediaType = 'docker'; Compression = 'gzip'; Disk = 'qcow2' }
            @{ Name = 'docker v2, plain tar, raw'; Tag = 'docker-tar-raw'; MediaType = 'docker'; Compression = 'none'; Disk = 'raw' }
            @{ Name = 'OCI, gzip, raw'; Tag = 'oci-gz-raw'; MediaType = 'oci'; Compression = 'gzip'; Disk = 'raw' }
            @{ Name = 'OCI, plain tar, qcow2'; Tag = 'oci-tar-qcow2'; MediaType = 'oci'; Compression = 'none'; Disk = 'qcow2' }
            @{ Name = 'OCI, zstd, pax headers, qcow2'; Tag = 'oci-zst-qcow2'; MediaType = 'oci'; Compression = 'zstd'; Disk = 'qcow2'; TarFormat = 'pax' }
        )
        foreach ($c in $Cases) {
            $file = if ($c.Disk -eq 'qcow2') { $Qcow2 } else { $Raw }
            $name = if ($c.Disk -eq 'qcow2') { 'disk.qcow2' } else { 'disk.img' }
            $tarFormat = if ($c.ContainsKey('TarFormat')) { $c.TarFormat } else { 'ustar' }
            $null = Publish-ContainerDisk 'lab/containerdisk' $c.Tag $c.MediaType @(Get-DiskLayer $file $name $c.Compression $tarFormat)
        }
        # Two layers, the top one holding the disk: the base is larger, so "the largest layer" would be wrong.
        $base = @{ compression = 'gzip'; tar = @(@{ path = 'etc/'; type = 'dir' }, @{ path = 'etc/base.bin'; file = $Other }) }
        $null = Publish-ContainerDisk 'lab/containerdisk' 'two-layers' 'docker' @($base, (Get-DiskLayer $Qcow2 'fedora.qcow2'))
        # A docker manifest list over two architectures, as multi-arch containerDisks are published; the host's is taken.
        $null = Publish-TestLayout -Registry $Registry -Repository 'lab/containerdisk' -Tag 'docker-list' -Spec @{
            manifests = @(
                @{ mediaType = 'docker'; layers = @(Get-DiskLayer $Qcow2 'disk.qcow2') }
                @{ mediaType = 'docker'; layers = @(Get-DiskLayer $Other 'disk.img') }
            )
            index     = @{ mediaType = 'docker'; entries = @(
                    @{ manifest = 0; platform = @{ os = 'linux'; architecture = 'amd64' } }
                    @{ manifest = 1; platform = @{ os = 'linux'; architecture = 'arm64' } }) }
        }
        $script:CD = "oras://$Host_/lab/containerdisk"
    }

    It '<Name>: Resolve reports the convention, the member path and the format' -ForEach @(
        @{ Name = 'docker v2, gzip, qcow2'; Tag = 'docker-gz-qcow2'; Member = 'disk/disk.qcow2'; Format = 'qcow2' }
        @{ Name = 'OCI, plain tar, raw'; Tag = 'oci-gz-raw'; Member = 'disk/disk.img'; Format = 'raw' }
        @{ Name = 'two layers'; Tag = 'two-layers'; Member = 'disk/fedora.qcow2'; Format = 'qcow2' }
    ) {
        $image = Resolve-OrasImage "${CD}:$Tag"
        $image.Convention | Should -Be 'containerDisk'
        $image.MemberPath | Should -Be $Member
        $image.DiskFormat | Should -Be $Format
        $image.Digest | Should -Be $image.Layers[-1].Digest
    }

    It '<Name>: installs to a qcow2 identical to the disk, with and without -GrowBy' -ForEach @(
        @{ Name = 'docker v2, gzip, qcow2'; Tag = 'docker-gz-qcow2' }
        @{ Name = 'docker v2, plain tar, raw'; Tag = 'docker-tar-raw' }
        @{ Name = 'OCI, gzip, raw'; Tag = 'oci-gz-raw' }
        @{ Name = 'OCI, plain tar, qcow2'; Tag = 'oci-tar-qcow2' }
        @{ Name = 'OCI, zstd, pax headers, qcow2'; Tag = 'oci-zst-qcow2' }
        @{ Name = 'two layers, top one holds the disk'; Tag = 'two-layers' }
        @{ Name = 'docker manifest list, linux/amd64'; Tag = 'docker-list'; Platform = 'linux/amd64' }
    ) {
        $platform = if ($_.ContainsKey('Platform')) { @{ Platform = $_.Platform } } else { @{} }
        $target = Join-Path (New-Folder) 'vm.qcow2'
        $r = Install-DiskImageFromOras "${CD}:$Tag" -Path $target @platform
        $r.Format | Should -Be 'qcow2'
        Assert-Same $target 'qcow2' ((Get-Item $Raw).Length + 0)
        $receipt = Get-Content "$target.oras.json" -Raw | ConvertFrom-Json
        $receipt.convention | Should -Be 'containerDisk'
        $receipt.memberPath | Should -BeLike 'disk/*'
        (Get-Content "$target.digest" -Raw).Trim() | Should -Be (Resolve-OrasImage "${CD}:$Tag" @platform).Digest

        $grown = Join-Path (New-Folder) 'vm.qcow2'
        $null = Install-DiskImageFromOras "${CD}:$Tag" -Path $grown -GrowBy 1MB @platform
        Assert-Same $grown 'qcow2' ((Get-Item $Raw).Length + 1MB)
    }

    It 'a qcow2 containerDisk installs as raw (-Format raw), decoded natively' {
        $target = Join-Path (New-Folder) 'vm.img'
        $r = Install-DiskImageFromOras "${CD}:docker-gz-qcow2" -Path $target -Format raw
        $r.Format | Should -Be 'raw'
        Assert-Same $target 'raw' (Get-Item $Raw).Length
    }

    It 'composes: Resolve | Save-OrasBlob as .tar, .tar.gz, .tar.zst | Convert-DiskImage and Expand-DiskImage find the disk' -ForEach @(
        @{ Tag = 'oci-tar-qcow2'; Name = 'layer.tar' }
        @{ Tag = 'docker-gz-qcow2'; Name = 'layer.tar.gz' }
        @{ Tag = 'oci-zst-qcow2'; Name = 'layer.tar.zst' }
    ) {
        $folder = New-Folder
        $saved = Resolve-OrasImage "${CD}:$Tag" | Save-OrasBlob -DestinationPath (Join-Path $folder $Name)
        $saved.Name | Should -Be $Name
        $null = $saved | Convert-DiskImage -DestinationPath (Join-Path $folder 'out.qcow2') -GrowBy 1MB
        Assert-Same (Join-Path $folder 'out.qcow2') 'qcow2' ((Get-Item $Raw).Length + 1MB)
        $null = Convert-DiskImage -LiteralPath $saved.FullName -DestinationPath (Join-Path $folder 'out.raw')
        Assert-Same (Join-Path $folder 'out.raw') 'raw' (Get-Item $Raw).Length
        if ($Name -ne 'layer.tar') {
            # Expand only decompresses: the disk member comes out as the qcow2 it is.
            $null = Expand-DiskImage -LiteralPath $saved.FullName -DestinationPath (Join-Path $folder 'expanded.qcow2')
            & $QemuImg compare -f qcow2 -F qcow2 $Qcow2 (Join-Path $folder 'expanded.qcow2') | Out-Null
            $LASTEXITCODE | Should -Be 0
        }
    }
}

Describe 'containerDisk layers and whiteouts' {
    BeforeAll {
        $script:CD = "oras://$Host_/lab/layers"
        # The disk is in the base layer; the top layer only adds a file: the topmost layer with a disk wins.
        $null = Publish-ContainerDisk 'lab/layers' 'lower' 'oci' @(
            (Get-DiskLayer $Qcow2 'disk.qcow2'),
            @{ compression = 'gzip'; tar = @(@{ path = 'etc/'; type = 'dir' }, @{ path = 'etc/motd'; text = 'hello' }) })
        # bottom: another disk first, then the right one; middle: another disk; top: whiteouts of the middle
        # one and of the bottom's first: the disk is the bottom's second file, which the install must take.
        $null = Publish-ContainerDisk 'lab/layers' 'whiteout' 'docker' @(
            @{ compression = 'gzip'; tar = @(
                    @{ path = 'disk/'; type = 'dir'; uid = 107; gid = 107 }
                    @{ path = 'disk/a.img'; file = $Other; uid = 107; gid = 107 }
                    @{ path = 'disk/good.img'; file = $Raw; uid = 107; gid = 107 }) },
            (Get-DiskLayer $Other 'bad.img'),
            @{ compression = 'gzip'; tar = @(@{ path = 'disk/'; type = 'dir' }, @{ path = 'disk/.wh.bad.img'; text = '' }, @{ path = 'disk/.wh.a.img'; text = '' }) })
        # An opaque whiteout hides every disk below: nothing is left.
        $null = Publish-ContainerDisk 'lab/layers' 'opaque' 'oci' @(
            (Get-DiskLayer $Raw 'disk.img'),
            @{ compression = 'gzip'; tar = @(@{ path = 'disk/'; type = 'dir' }, @{ path = 'disk/.wh..wh..opq'; text = '' }) })
    }

    It 'takes the disk from a lower layer when the top layer has none' {
        $image = Resolve-OrasImage "${CD}:lower"
        $image.Digest | Should -Be $image.Layers[0].Digest
        $image.MemberPath | Should -Be 'disk/disk.qcow2'
        $target = Join-Path (New-Folder) 'vm.qcow2'
        $null = Install-DiskImageFromOras "${CD}:lower" -Path $target -GrowBy 1MB
        Assert-Same $target 'qcow2' ((Get-Item $Raw).Length + 1MB)
    }

    It 'a whiteout in an upper layer hides the disk of the layer below it' {
        $image = Resolve-OrasImage "${CD}:whiteout"
        $image.MemberPath | Should -Be 'disk/good.img'
        $image.Digest | Should -Be $image.Layers[0].Digest
        $target = Join-Path (New-Folder) 'vm.qcow2'
        $null = Install-DiskImageFromOras "${CD}:whiteout" -Path $target
        Assert-Same $target 'qcow2' (Get-Item $Raw).Length
    }

    It 'an opaque whiteout over disk/ leaves no disk: UnsupportedFormat, nothing written' {
        $target = Join-Path (New-Folder) 'vm.qcow2'
        $e = Invoke-Failing { Install-DiskImageFromOras "${CD}:opaque" -Path $target }
        $e.FullyQualifiedErrorId | Should -BeLike 'UnsupportedFormat,*'
        $e.Exception.Message | Should -BeLike '*.wh..wh..opq*'
        Get-FolderNames $target | Should -BeNullOrEmpty
    }
}

Describe 'podman machine-os index' {
    BeforeAll {
        # One manifest per disk type, annotation disktype on the index entry; the first entry is not qemu.
        function script:Get-PodmanManifest([string] $File, [string] $Title) {
            @{ mediaType = 'oci'; artifactType = 'application/vnd.oci.empty.v1+json'; layers = @(@{ mediaType = 'application/zstd'; file = $File; annotations = @{ 'org.opencontainers.image.title' = $Title } }) }
        }
        $null = Publish-TestLayout -Registry $Registry -Repository 'lab/machine-os' -Tag '5.5' -Spec @{
            manifests = @(
                (Get-PodmanManifest $OtherZst 'podman-machine.x86_64.applehv.raw.zst')
                (Get-PodmanManifest $VhdxZst 'podman-machine.x86_64.hyperv.vhdx.zst')
                (Get-PodmanManifest $QcowZst 'podman-machine.x86_64.qemu.qcow2.zst')
            )
            index     = @{
                mediaType = 'oci'
                entries   = @(
                    @{ manifest = 0; platform = @{ os = 'linux'; architecture = 'amd64' }; annotations = @{ disktype = 'applehv' } }
                    @{ manifest = 1; platform = @{ os = 'linux'; architecture = 'amd64' }; annotations = @{ disktype = 'hyperv' } }
                    @{ manifest = 2; platform = @{ os = 'linux'; architecture = 'amd64' }; annotations = @{ disktype = 'qemu' } }
                )
            }
        }
        $script:Podman = "oras://$Host_/lab/machine-os:5.5"
    }

    It '-Path x.qcow2 picks the qemu disk' {
        $target = Join-Path (New-Folder) 'machine.qcow2'
        $null = Install-DiskImageFromOras $Podman -Path $target -GrowBy 1MB
        Assert-Same $target 'qcow2' ((Get-Item $Raw).Length + 1MB)
        (Get-Content "$target.oras.json" -Raw | ConvertFrom-Json).convention | Should -Be 'podman'
    }

    It '-DiskType applehv -Format raw picks the raw disk' {
        $target = Join-Path (New-Folder) 'machine.img'
        $null = Install-DiskImageFromOras $Podman -Path $target -DiskType applehv -Format raw
        Assert-Same $target 'raw' (Get-Item $Other).Length -Source $Other
    }

    It 'Resolve -DiskType reports the convention, the type and the format' {
        $image = Resolve-OrasImage $Podman -DiskType qemu
        $image.Convention | Should -Be 'podman'
        $image.DiskType | Should -Be 'qemu'
        $image.DiskFormat | Should -Be 'qcow2'
        $image.Title | Should -Be 'podman-machine.x86_64.qemu.qcow2.zst'
    }

    It 'an unknown -DiskType, or none without a target format, lists the types' {
        $e = Invoke-Failing { Resolve-OrasImage $Podman -DiskType wsl }
        $e.FullyQualifiedErrorId | Should -BeLike 'PlatformAmbiguous,*'
        $e.Exception.Message | Should -BeLike '*applehv (raw), hyperv (vhdx), qemu (qcow2)*'
        $e = Invoke-Failing { Resolve-OrasImage $Podman }
        $e.Exception.Message | Should -BeLike '*applehv*hyperv*qemu*'
    }

    It 'completes -DiskType from the index' {
        $line = "Install-DiskImageFromOras -Reference '$Podman' -DiskType "
        $completions = (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText
        $completions | Should -Be @('applehv', 'hyperv', 'qemu')
    }
}

Describe 'CoreOS / Konflux disk images' {
    BeforeAll {
        function script:Get-CoreOSManifest([string] $File, [string] $ArtifactType, [string] $Title) {
            @{ mediaType = 'oci'; artifactType = $ArtifactType; layers = @(@{ mediaType = 'application/octet-stream'; file = $File; annotations = @{ 'org.opencontainers.image.title' = $Title } }) }
        }
        # The disk type in platform.os; artifactType application/vnd.diskimage.<format>[.<compression>].
        $null = Publish-TestLayout -Registry $Registry -Repository 'lab/fcos' -Tag 'stable' -Spec @{
            manifests = @(
                (Get-CoreOSManifest $RawGz 'application/vnd.diskimage.raw.gzip' 'fedora-coreos-metal.x86_64.raw.gz')
                (Get-CoreOSManifest $Qcow2 'application/vnd.diskimage.qcow2' 'fedora-coreos-qemu.x86_64.qcow2')
            )
            index     = @{
                mediaType = 'oci'
                entries   = @(
                    @{ manifest = 0; artifactType = 'application/vnd.diskimage.raw.gzip'; platform = @{ os = 'metal'; architecture = 'amd64' } }
                    @{ manifest = 1; artifactType = 'application/vnd.diskimage.qcow2'; platform = @{ os = 'qemu'; architecture = 'amd64' } }
                )
            }
        }
        $script:Fcos = "oras://$Host_/lab/fcos:stable"
    }

    It 'a qcow2 target takes the qemu disk, a raw target the metal one' {
        $image = Resolve-OrasImage $Fcos -DiskType qemu
        $image.Convention | Should -Be 'diskimage'
        $image.DiskFormat | Should -Be 'qcow2'
        $target = Join-Path (New-Folder) 'fcos.qcow2'
        $null = Install-DiskImageFromOras $Fcos -Path $target
        Assert-Same $target 'qcow2' (Get-Item $Raw).Length
        $raw = Join-Path (New-Folder) 'fcos.img'
        $null = Install-DiskImageFromOras $Fcos -Path $raw
        Assert-Same $raw 'raw' (Get-Item $Raw).Length
        (Resolve-OrasImage $Fcos -DiskType metal).DiskFormat | Should -Be 'raw'
    }
}

Describe 'KubeVirt disk artifacts (VEP 256)' {
    BeforeAll {
        # As VEP 256 specifies: an index (artifactType application/vnd.kubevirt.virtualmachine.v1, linux/<arch>)
        # over one manifest whose config is the VM definition and whose layers are the disks, raw+zstd, with
        # io.kubevirt.disk.name and io.kubevirt.disk.size as a binary SI quantity ("10Gi").
        function script:Get-KubeVirtLayer([string] $File, [string] $Name, [string] $Size) {
            @{ mediaType = 'application/vnd.kubevirt.disk.raw+zstd'; file = $File
                annotations = @{ 'io.kubevirt.disk.name' = $Name; 'io.kubevirt.disk.size' = $Size; 'org.opencontainers.image.title' = "$Name.raw.zst" } }
        }
        function script:Publish-KubeVirt([string] $Tag, [object[]] $Layers) {
            Publish-TestLayout -Registry $Registry -Repository 'lab/kubevirt' -Tag $Tag -Spec @{
                manifests = @(@{ mediaType = 'oci'; artifactType = 'application/vnd.kubevirt.virtualmachine.v1'; layers = $Layers
                        config = @{ mediaType = 'application/vnd.kubevirt.virtualmachine.config.v1+json'; json = '{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachine","metadata":{"name":"vm"}}' } })
                index     = @{ mediaType = 'oci'; artifactType = 'application/vnd.kubevirt.virtualmachine.v1'; annotations = @{ 'org.opencontainers.image.created' = '2026-01-01T00:00:00Z' }
                    entries = @(@{ manifest = 0; platform = @{ os = 'linux'; architecture = 'amd64' } }) }
            }
        }
        # root in plain bytes, data (exactly 2 MiB) as a quantity.
        $null = Publish-KubeVirt 'two' @((Get-KubeVirtLayer $RawZst 'root' "$((Get-Item $Raw).Length)"), (Get-KubeVirtLayer $OtherZst 'data' '2Mi'))
        # The declared size (3Mi) is short of what the layer inflates to (3 MiB + 1536).
        $null = Publish-KubeVirt 'short' @(Get-KubeVirtLayer $RawZst 'root' '3Mi')
        $script:KV = "oras://$Host_/lab/kubevirt"
    }

    It 'two disks and no -DiskName: the error lists them' {
        $target = Join-Path (New-Folder) 'vm.qcow2'
        $e = Invoke-Failing { Install-DiskImageFromOras "${KV}:two" -Path $target }
        $e.FullyQualifiedErrorId | Should -BeLike 'NoImageLayer,*'
        $e.Exception.Message | Should -BeLike '*root, data*'
        Get-FolderNames $target | Should -BeNullOrEmpty
    }

    It '-DiskName picks the disk; Resolve reports name, format and declared size' {
        $image = Resolve-OrasImage "${KV}:two" -DiskName data
        $image.Convention | Should -Be 'kubevirt'
        $image.DiskName | Should -Be 'data'
        $image.DiskFormat | Should -Be 'raw'
        $image.DeclaredSize | Should -Be (Get-Item $Other).Length
        $target = Join-Path (New-Folder) 'data.qcow2'
        $null = Install-DiskImageFromOras "${KV}:two" -Path $target -DiskName data
        Assert-Same $target 'qcow2' (Get-Item $Other).Length -Source $Other
    }

    It 'completes -DiskName from the manifest' {
        $line = "Resolve-OrasImage -Reference '${KV}:two' -DiskName "
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Be @('root', 'data')
    }

    It 'a layer that inflates past io.kubevirt.disk.size fails with CorruptInput, nothing written' {
        $target = Join-Path (New-Folder) 'vm.qcow2'
        $e = Invoke-Failing { Install-DiskImageFromOras "${KV}:short" -Path $target }
        $e.FullyQualifiedErrorId | Should -BeLike 'CorruptInput,*'
        $e.Exception.Message | Should -BeLike '*declares*'
        Get-FolderNames $target | Should -BeNullOrEmpty
    }
}

Describe 'payloads that are no disk image' {
    BeforeAll {
        $zip = Join-Path $Work 'payload.zip'
        $zipSource = New-Item -ItemType Directory -Force (Join-Path $Work 'zipsrc')
        Set-Content (Join-Path $zipSource 'readme.txt') 'not a disk'
        Compress-Archive -Path (Join-Path $zipSource 'readme.txt') -DestinationPath $zip -Force
        $html = Join-Path $Work 'portal.html'
        Set-Content $html '<!DOCTYPE html><html><body>Please log in</body></html>'
        $null = Publish-ContainerDisk 'lab/nodisk' 'app' 'docker' @(@{ compression = 'gzip'; tar = @(@{ path = 'usr/bin/'; type = 'dir' }, @{ path = 'usr/bin/app'; text = 'binary' }) })
        foreach ($p in @(@{ Tag = 'zip'; File = $zip; Title = 'disk.img' }, @{ Tag = 'html'; File = $html; Title = 'disk.img' })) {
            $null = Publish-TestLayout -Registry $Registry -Repository 'lab/nodisk' -Tag $p.Tag -Spec @{
                manifests = @(@{ mediaType = 'oci'; artifactType = 'application/vnd.example.disk'; layers = @(@{ mediaType = 'application/octet-stream'; file = $p.File; annotations = @{ 'org.opencontainers.image.title' = $p.Title } }) })
            }
        }
        $script:ND = "oras://$Host_/lab/nodisk"
    }

    It '<Tag>: UnsupportedFormat saying what it is, nothing written' -ForEach @(
        @{ Tag = 'app'; What = '*no layer has a regular file under disk/*usr/bin/app*' }
        @{ Tag = 'zip'; What = '*zip archive*' }
        @{ Tag = 'html'; What = '*HTML page*' }
    ) {
        $target = Join-Path (New-Folder) 'vm.qcow2'
        $e = Invoke-Failing { Install-DiskImageFromOras "${ND}:$Tag" -Path $target }
        $e.FullyQualifiedErrorId | Should -BeLike 'UnsupportedFormat,*'
        $e.Exception.Message | Should -BeLike $What
        Get-FolderNames $target | Should -BeNullOrEmpty
    }
}

Describe 'a containerDisk built and pushed by buildah' {
    BeforeAll {
        $script:Buildah = Get-Command buildah -CommandType Application -ErrorAction Ignore | Select-Object -First 1
        if ($Buildah) {
            $script:BuildahRoot = New-Folder
            $common = @('--storage-driver', 'vfs', '--root', (Join-Path $BuildahRoot 'root'), '--runroot', (Join-Path $BuildahRoot 'run'))
            $script:BuildahCommon = $common
            # The isolated DOCKER_CONFIG has no config.json; buildah wants an auth file that exists.
            $auth = Join-Path $BuildahRoot 'auth.json'
            Set-Content -LiteralPath $auth '{"auths":{}}'
            # Likewise the isolated registries.conf (which does not exist): buildah gets an empty one of its own.
            $savedConf = $env:CONTAINERS_REGISTRIES_CONF
            $env:CONTAINERS_REGISTRIES_CONF = Join-Path $BuildahRoot 'registries.conf'
            Set-Content -LiteralPath $env:CONTAINERS_REGISTRIES_CONF ''
            # One image per push, each with a disk of its own: buildah 1.28 (no --force-compression) would reuse
            # the layer blob of the first push in the other compression and fail ("zstd compression is not
            # supported for type ...docker...") or push gzip where zstd was asked for.
            $script:OtherQcow2 = Join-Path $Work 'other.qcow2'
            & $QemuImg convert -c -f raw -O qcow2 $Other $OtherQcow2
            $pushes = @(
                @{ Tag = 'v2s2'; Disk = $Qcow2; Args = @('--format', 'v2s2') }
                @{ Tag = 'oci-zstd'; Disk = $OtherQcow2; Args = @('--format', 'oci', '--compression-format', 'zstd') }
            )
            try {
                foreach ($push in $pushes) {
                    $context = New-Folder
                    Copy-Item $push.Disk (Join-Path $context 'disk.qcow2')
                    # The two-line Containerfile of KubeVirt's containerDisk docs.
                    Set-Content (Join-Path $context 'Containerfile') "FROM scratch`nADD --chown=107:107 disk.qcow2 /disk/`n"
                    $image = "localhost/containerdisk:$($push.Tag)"
                    $out = & $Buildah.Source @common build --quiet --isolation chroot -f (Join-Path $context 'Containerfile') -t $image $context 2>&1
                    if ($LASTEXITCODE -ne 0) { throw "buildah build failed: $($out -join "`n")" }
                    $out = & $Buildah.Source @common push --quiet --tls-verify=false --authfile $auth @($push.Args) $image "docker://$Host_/lab/buildah:$($push.Tag)" 2>&1
                    if ($LASTEXITCODE -ne 0) { throw "buildah push failed: $($out -join "`n")" }
                }
            }
            finally { $env:CONTAINERS_REGISTRIES_CONF = $savedConf }
        }
    }

    It '<Tag>: installs to a qcow2 identical to the disk, with and without -GrowBy' -ForEach @(
        @{ Tag = 'v2s2'; MediaType = 'application/vnd.docker.image.rootfs.diff.tar.gzip'; Source = 'Raw' }
        @{ Tag = 'oci-zstd'; MediaType = 'application/vnd.oci.image.layer.v1.tar+zstd'; Source = 'Other' }
    ) {
        if (-not $Buildah) { Set-ItResult -Skipped -Because 'buildah is not installed (apt-get install buildah)'; return }
        $image = Resolve-OrasImage "oras://$Host_/lab/buildah:$Tag"
        $image.Convention | Should -Be 'containerDisk'
        $image.MediaType | Should -Be $MediaType
        $image.MemberPath | Should -Be 'disk/disk.qcow2'
        $sourceDisk = Get-Variable -Name $Source -ValueOnly
        $target = Join-Path (New-Folder) 'vm.qcow2'
        $null = Install-DiskImageFromOras "oras://$Host_/lab/buildah:$Tag" -Path $target
        Assert-Same $target 'qcow2' (Get-Item $sourceDisk).Length -Source $sourceDisk
        $grown = Join-Path (New-Folder) 'vm.qcow2'
        $null = Install-DiskImageFromOras "oras://$Host_/lab/buildah:$Tag" -Path $grown -GrowBy 1MB
        Assert-Same $grown 'qcow2' ((Get-Item $sourceDisk).Length + 1MB) -Source $sourceDisk
    }

    AfterAll {
        if ($script:Buildah -and $script:BuildahRoot) {
            $savedConf = $env:CONTAINERS_REGISTRIES_CONF
            $env:CONTAINERS_REGISTRIES_CONF = Join-Path $BuildahRoot 'registries.conf'
            try { & $Buildah.Source @BuildahCommon rmi --all --force 2>&1 | Out-Null }
            finally { $env:CONTAINERS_REGISTRIES_CONF = $savedConf }
        }
    }
}
