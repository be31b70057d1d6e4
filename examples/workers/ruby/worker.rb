#!/usr/bin/env ruby
# A takefive worker in Ruby (Debian: apt-get install ruby-ffi-rzmq), speaking the
# T5W1 protocol of docs/protocol.md to job pools (--connect, PUSH/PULL) and
# service dispatchers (--service, DEALER with READY and heartbeats).
#
# Messages: on a job socket, REQUEST (one job) and REQUESTS (a batch of jobs, one
# frame of back-to-back records; each job is answered with its own REPLY or ERROR,
# PUSHed to the batch's reply-to); on a service link, READY, HEARTBEAT, DISCONNECT
# and REQUEST (services do not batch), answered with REPLY or ERROR on the link.
# Anything malformed (a whole batch, if any record of it is) is logged and dropped.
#
# It serves the reference task set (examples/workers/python/tasks.py):
#   echo   the payload back, same encoding
#   pid    this process id, as JSON
#   sleep  sleep for the payload's seconds (a JSON number) and return it
#   fail   always an ERROR "failed"
#
#   ruby examples/workers/ruby/worker.rb --service tcp://127.0.0.1:5555 --heartbeat 1
require 'ffi-rzmq'
require 'json'
require 'socket'

HEADER = 'T5W1'.b
NAME_RE = %r{\A[A-Za-z0-9_.:/-]{1,255}\z}n
JOB_ID_RE = /\A[\x21-\x7e]{1,255}\z/n
FUNCTIONS = %w[echo fail pid sleep].freeze
JOB_HEAD = 'CCCN' # job record: job-id, name, encoding lengths (1 byte each), payload length (4, BE)
JOB_HEAD_SIZE = 7

# One job: from a REQUEST, or one record of a REQUESTS batch.
Job = Struct.new(:id, :name, :encoding, :payload)

# A message that must be logged and dropped; the text says why.
class Malformed < StandardError; end

def log(text)
  warn "ruby-worker #{Process.pid}: #{text}"
end

def now
  Process.clock_gettime(Process::CLOCK_MONOTONIC)
end

# One DEALER connection to a dispatcher.
class Link
  attr_accessor :endpoint, :sock, :last_seen, :next_heartbeat, :backoff, :reconnect_at

  def initialize(endpoint)
    @endpoint = endpoint
    @backoff = 0.0
    @reconnect_at = 0.0
  end
end

class Worker
  def initialize(connects, services, heartbeat, liveness)
    @ctx = ZMQ::Context.new
    @heartbeat = heartbeat
    @liveness = liveness
    @info = "ruby/#{Process.pid}@#{Socket.gethostname}"
    @results = {}
    @stopping = false
    @jobs = 0
    @pull = nil
    @connects = connects
    unless connects.empty?
      @pull = @ctx.socket(ZMQ::PULL)
      @pull.setsockopt(ZMQ::LINGER, 0)
      @pull.setsockopt(ZMQ::RCVHWM, 20) # messages taken ahead: lost if this worker dies
      connects.each { |ep| check(@pull.connect(ep), "connect #{ep}") }
    end
    @links = services.map { |ep| Link.new(ep) }
    @links.each { |link| connect_link(link) }
  end

  def stop
    @stopping = true
  end

  def check(rc, what)
    raise "#{what}: #{ZMQ::Util.error_string}" unless ZMQ::Util.resultcode_ok?(rc)
  end

  def connect_link(link)
    link.sock = @ctx.socket(ZMQ::DEALER)
    link.sock.setsockopt(ZMQ::LINGER, 0)
    check(link.sock.connect(link.endpoint), "connect #{link.endpoint}")
    ms = (@heartbeat * 1000).round.to_s
    link.sock.send_strings([HEADER, 'READY', ms, @info, *FUNCTIONS])
    link.last_seen = now
    link.next_heartbeat = now + @heartbeat
  end

  def reset_link(link, backoff)
    link.sock&.close
    link.sock = nil
    if backoff
      link.backoff = [[link.backoff * 2, @heartbeat].max, 32 * @heartbeat].min
      link.reconnect_at = now + link.backoff
    else
      link.reconnect_at = now
    end
  end

  def tick_links
    t = now
    @links.each do |link|
      if link.sock.nil?
        connect_link(link) if !@stopping && t >= link.reconnect_at
      elsif t - link.last_seen > @heartbeat * @liveness
        log "dispatcher #{link.endpoint} silent; reconnecting"
        reset_link(link, true)
      elsif t >= link.next_heartbeat
        link.sock.send_strings([HEADER, 'HEARTBEAT'])
        link.next_heartbeat = t + @heartbeat
      end
    end
  end

  def result_socket(endpoint)
    return nil if endpoint.empty?

    @results[endpoint] ||= begin
      sock = @ctx.socket(ZMQ::PUSH)
      sock.setsockopt(ZMQ::LINGER, 2000)
      unless ZMQ::Util.resultcode_ok?(sock.connect(endpoint))
        log "cannot connect to reply-to #{endpoint.inspect}: #{ZMQ::Util.error_string}"
        sock.close
        return nil
      end
      sock
    end
  end

  # Sleep, still heartbeating every dispatcher.
  def busy_sleep(seconds)
    deadline = now + seconds
    while (left = deadline - now) > 0
      sleep([left, @heartbeat / 4].min)
      @links.each do |link|
        next if link.sock.nil? || now < link.next_heartbeat

        link.sock.send_strings([HEADER, 'HEARTBEAT'])
        link.next_heartbeat = now + @heartbeat
      end
    end
  end

  def check_job(job)
    raise Malformed, 'invalid job-id' unless job.id =~ JOB_ID_RE
    raise Malformed, 'invalid name' unless job.name =~ NAME_RE
    raise Malformed, 'invalid encoding' unless job.encoding =~ NAME_RE

    job
  end

  # [T5W1, REQUEST, job-id, name, encoding, payload, reply-to] -> [reply-to, [job]]
  def parse_request(frames)
    raise Malformed, "REQUEST has #{frames.size} frames, not 7" unless frames.size == 7

    [frames[6], [check_job(Job.new(*frames[2, 4]))]]
  end

  # [T5W1, REQUESTS, reply-to, jobs] -> [reply-to, [job, ...]]; the whole body is
  # checked before any job runs: one bad record makes the whole batch malformed.
  def parse_requests(frames)
    raise Malformed, "REQUESTS has #{frames.size} frames, not 4" unless frames.size == 4

    body = frames[3].b
    size = body.bytesize
    raise Malformed, 'REQUESTS carries no job' if size.zero?

    jobs = []
    pos = 0
    while pos < size
      raise Malformed, "truncated job record at byte #{pos}" if size - pos < JOB_HEAD_SIZE

      lengths = body.unpack(JOB_HEAD, offset: pos)
      pos += JOB_HEAD_SIZE
      stop = pos + lengths.sum
      raise Malformed, "a job record runs past the end (#{stop} > #{size})" if stop > size

      fields = lengths.map do |len|
        field = body.byteslice(pos, len)
        pos += len
        field
      end
      jobs << check_job(Job.new(*fields))
    end
    [frames[2], jobs]
  end

  # A well-formed job -> its REPLY or ERROR frames.
  def run(job)
    job_id, name, enc, payload = job.id, job.name, job.encoding, job.payload
    error = ->(code, text) { [HEADER, 'ERROR', job_id, code, text.b] }
    reply = ->(encoding, data) { [HEADER, 'REPLY', job_id, encoding, data] }
    return error.call('bad-request', "unknown payload encoding '#{enc}'") unless %w[json msgpack raw].include?(enc)

    case name
    when 'echo' then reply.call(enc, payload)
    when 'pid' then reply.call('json', Process.pid.to_s)
    when 'sleep'
      seconds = begin
        enc == 'json' ? JSON.parse(payload, quirks_mode: true) : nil
      rescue JSON::ParserError
        nil
      end
      unless seconds.is_a?(Numeric) && seconds >= 0
        return error.call('failed', 'ValueError: sleep takes a non-negative number of seconds')
      end

      busy_sleep(seconds)
      reply.call('json', payload)
    when 'fail' then error.call('failed', 'RuntimeError: failed on purpose')
    else error.call('unknown', "no function '#{name}' here (known: #{FUNCTIONS.join(', ')})")
    end
  end

  def recv(sock)
    frames = []
    rc = sock.recv_strings(frames, ZMQ::DONTWAIT)
    ZMQ::Util.resultcode_ok?(rc) ? frames.map(&:b) : nil
  end

  # A REQUEST or REQUESTS from a job socket: run each job, PUSH each answer to reply-to.
  def handle_job(frames)
    reply_to, jobs =
      if frames.size >= 2 && frames[0] == HEADER && frames[1] == 'REQUEST'
        parse_request(frames)
      elsif frames.size >= 2 && frames[0] == HEADER && frames[1] == 'REQUESTS'
        parse_requests(frames)
      else
        log 'dropping a bad message on the job socket'
        return
      end
    sock = result_socket(reply_to)
    if sock.nil?
      log "dropping #{jobs.size} job(s) without a usable reply-to endpoint"
      return
    end
    jobs.each do |job|
      sock.send_strings(run(job))
      @jobs += 1
    end
  rescue Malformed => e
    log "dropping a malformed #{frames[1]} (#{e.message})"
  end

  def handle_link(link, frames)
    link.last_seen = now
    link.backoff = 0.0
    if frames.size < 2 || frames[0] != HEADER
      log "dropping a bad message from #{link.endpoint}"
    elsif frames[1] == 'REQUEST'
      begin
        _, jobs = parse_request(frames)
      rescue Malformed => e
        log "dropping a malformed REQUEST from #{link.endpoint} (#{e.message})"
        return
      end
      out = run(jobs.first)
      link.sock&.send_strings(out)
      link.next_heartbeat = now + @heartbeat
      @jobs += 1
    elsif frames[1] == 'HEARTBEAT' && frames.size == 2
      nil
    elsif frames[1] == 'DISCONNECT' && frames.size == 2
      log "dispatcher #{link.endpoint} said DISCONNECT; reconnecting"
      reset_link(link, false)
    else
      log "dropping an unexpected message from #{link.endpoint}"
    end
  end

  def serve
    log "#{@info} serving #{FUNCTIONS.join(', ')}"
    until @stopping
      poller = ZMQ::Poller.new
      poller.register_readable(@pull) if @pull
      @links.each { |link| poller.register_readable(link.sock) if link.sock }
      t = now
      timeout = 0.1
      @links.each do |link|
        due = link.sock ? link.next_heartbeat : link.reconnect_at
        timeout = [timeout, [due - t, 0].max].min
      end
      poller.poll((timeout * 1000).ceil)
      poller.readables.each do |sock|
        break if @stopping # start no new job once stopping (the last one was answered)

        if sock.equal?(@pull)
          frames = recv(@pull)
          handle_job(frames) if frames
        else
          link = @links.find { |l| l.sock.equal?(sock) }
          while !@stopping && link&.sock && (frames = recv(link.sock))
            handle_link(link, frames)
          end
        end
      end
      tick_links
    end
    shutdown
  end

  # Clean leave (docs/protocol.md), in this order: read every message (REQUEST or
  # REQUESTS batch) already queued on the PULL socket, then disconnect it (libzmq
  # discards what is still queued on a pipe whose endpoint is disconnected), say
  # DISCONNECT to each dispatcher (no call of theirs is running: their requests still
  # queued here are dropped, and the dispatcher retries or fails them), then run the
  # jobs read (every job of every batch) and send their results.
  def shutdown
    held = []
    if @pull
      while (frames = recv(@pull))
        held << frames
      end
      @connects.each { |ep| @pull.disconnect(ep) }
    end
    @links.each do |link|
      next unless link.sock

      link.sock.send_strings([HEADER, 'DISCONNECT'])
      link.sock.setsockopt(ZMQ::LINGER, 500)
      link.sock.close
      link.sock = nil
    end
    log "stopping: running the #{held.size} message(s) of jobs already received" unless held.empty?
    held.each { |frames| handle_job(frames) }
    @pull&.close
    @results.each_value(&:close) # LINGER 2 s: results get out
    @ctx.terminate
    log "stopped after #{@jobs} job(s)"
  end
end

connects = []
services = []
heartbeat = 1.0
liveness = 3
args = ARGV.dup
until args.empty?
  flag = args.shift
  value = args.shift or abort 'usage: worker.rb [--connect EP]... [--service EP]... [--heartbeat S] [--liveness N]'
  case flag
  when '--connect' then connects << value
  when '--service' then services << value
  when '--heartbeat' then heartbeat = Float(value)
  when '--liveness' then liveness = Integer(value)
  else abort "unknown option #{flag}"
  end
end
abort 'a worker needs --connect or --service' if connects.empty? && services.empty?

worker = Worker.new(connects, services, heartbeat, liveness)
%w[TERM INT].each { |sig| Signal.trap(sig) { worker.stop } }
worker.serve
